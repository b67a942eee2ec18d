"""Worker heartbeats for the system status page.

Frozen: this class is the table as this step created it (see the package docstring).
"""

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from appliance.web.migrations import FrozenModel, create_frozen


class WorkerHeartbeat(FrozenModel):
    id = AutoField()
    host = CharField(max_length=255, unique=True)
    pid = IntegerField()
    last_round_at = DateTimeField()
    last_failures = TextField()

    class Meta:
        table_name = "worker_heartbeat"


MODELS = [WorkerHeartbeat]


def up(db, migrator):
    create_frozen(db, MODELS)
