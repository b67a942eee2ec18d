"""Sync to the vendor: the outbox, its state rows and the daily request counter.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import AutoField, CharField, DateField, DateTimeField, IntegerField, TextField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.models.base import utcnow


class SyncOutbox(FrozenModel):
    id = AutoField()
    report_day = DateField(unique=True)
    report_id = CharField(max_length=36, unique=True)
    payload = TextField()
    state = CharField(max_length=10)
    attempts = IntegerField()
    next_attempt_at = DateTimeField()
    idempotency_key = CharField(max_length=64, null=True, index=True)
    lease_until = DateTimeField(null=True)
    last_error = TextField(null=True)
    created_at = DateTimeField()
    sent_at = DateTimeField(null=True)

    class Meta:
        table_name = "sync_outbox"
        indexes = ((("state", "next_attempt_at"), False),)


class SyncState(FrozenModel):
    key = CharField(max_length=64, primary_key=True)
    value = TextField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "sync_state"


class SyncRequestDay(FrozenModel):
    day = DateField(primary_key=True)
    requests = IntegerField()

    class Meta:
        table_name = "sync_request_day"


MODELS = [SyncOutbox, SyncState, SyncRequestDay]


def up(db, migrator):
    create_frozen(db, MODELS)
    # The row app hosts lock (FOR UPDATE SKIP LOCKED) so that one of them sends at a time.
    with db.bind_ctx([SyncState]):
        SyncState.insert(key="sender_lock", value="", updated_at=utcnow()).on_conflict_ignore().execute()
