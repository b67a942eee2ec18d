"""Metered usage: one row per tenant per local day (see appliance/web/services/metering.py)."""

from __future__ import annotations

from peewee import CharField, DateField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant


class UsageDay(BaseModel):
    """Metered usage of one tenant on one local day; kept so retention can prune messages."""

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    day = DateField()
    conversations = IntegerField(default=0)
    messages_in = IntegerField(default=0)
    messages_out = IntegerField(default=0)
    active_operators = IntegerField(default=0)
    seats = IntegerField(default=0)
    programs = CharField(max_length=255, default="")  # comma-separated, sorted
    computed_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("tenant", "day"), True), (("day",), False))
