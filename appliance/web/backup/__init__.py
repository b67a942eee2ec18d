"""Backup and restore of one instance: database dumps, encrypted archives, retention, shredding.

The archive format lives in ``appliance.core.backup.archive``; this package feeds it
(``dumps.py``: SQLite online backup, ``pg_dump -Fc``; the installation identity) and
restores from it (``service.py``). ``appliance backup`` is its command line.
"""

from appliance.web.backup.service import (
    BackupError,
    BackupInfo,
    create_backup,
    list_backups,
    prune_backups,
    restore_backup,
    verify_backup,
)

__all__ = ["BackupError", "BackupInfo", "create_backup", "list_backups", "prune_backups",
           "restore_backup", "verify_backup"]
