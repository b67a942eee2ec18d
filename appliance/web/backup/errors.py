"""The one error type of backup and restore: a message naming what is wrong and what to do."""


class BackupError(RuntimeError):
    pass
