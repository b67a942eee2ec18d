"""Live updates and presence: the change feed the event streams read, and who is online."""

from __future__ import annotations

from peewee import BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant, User


class LiveEvent(BaseModel):
    """One change an open page should show: a new message, a status or an assignment.

    The table is the event source for every gunicorn worker and app host alike (streams
    poll it by id); rows hold ids only, never content, and are pruned after an hour.
    """

    id = BigAutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    conversation_id = IntegerField(index=True)
    kind = CharField(max_length=20)  # message | status | assignment | delivery
    message_id = IntegerField(null=True)
    direction = CharField(max_length=4, null=True)
    created_at = DateTimeField(default=utcnow, index=True)


class Presence(BaseModel):
    """When an agent's page last held a stream open (seen) and last had input (active)."""

    user = ForeignKeyField(User, unique=True, on_delete="CASCADE")
    last_seen_at = DateTimeField(default=utcnow)
    last_active_at = DateTimeField(default=utcnow)
