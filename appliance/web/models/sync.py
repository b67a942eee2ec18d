"""Sync to the vendor: the outbox of signed daily reports, and its small state table."""

from __future__ import annotations

from peewee import CharField, DateField, DateTimeField, IntegerField, TextField

from appliance.web.models.base import BaseModel, utcnow

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


class SyncOutbox(BaseModel):
    """One signed report per day; a batch is the rows sharing an idempotency key.

    The payload is signed when queued, so every retry sends the very same bytes
    and the receiver can recognise it. ``lease_until`` only matters on SQLite,
    where a claim is committed before the request (see appliance/web/sync/outbox.py).
    """

    report_day = DateField(unique=True)
    report_id = CharField(max_length=36, unique=True)
    payload = TextField()  # the signed envelope, canonical JSON
    state = CharField(max_length=10, default=PENDING)
    attempts = IntegerField(default=0)
    next_attempt_at = DateTimeField(default=utcnow)
    idempotency_key = CharField(max_length=64, null=True, index=True)
    lease_until = DateTimeField(null=True)
    last_error = TextField(null=True)  # reasons and HTTP statuses only, never payload values
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "next_attempt_at"), False),)


class SyncState(BaseModel):
    """Key/value rows: the admin's on/off switch, what the vendor announced, request counts.

    The switch lives here, not in config.yml, because config.yml belongs to the
    installer (Ansible); the installer's ``sync.locked_off`` still wins.
    """

    key = CharField(max_length=64, primary_key=True)
    value = TextField()
    updated_at = DateTimeField(default=utcnow)


class SyncRequestDay(BaseModel):
    """Requests made to the vendor per UTC day: the hard daily cap is checked against this."""

    day = DateField(primary_key=True)
    requests = IntegerField(default=0)
