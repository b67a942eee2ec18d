"""Worker heartbeats for the system status page."""

from appliance.web.models.system import WorkerHeartbeat


def up(db, migrator):
    db.create_tables([WorkerHeartbeat], safe=True)
