"""Installation-wide bookkeeping: which workers are alive."""

from __future__ import annotations

from peewee import CharField, DateTimeField, IntegerField, TextField

from appliance.web.models.base import BaseModel, utcnow


class WorkerHeartbeat(BaseModel):
    """One row per worker host, touched after every round of jobs."""

    host = CharField(max_length=255, unique=True)
    pid = IntegerField()
    last_round_at = DateTimeField(default=utcnow)
    last_failures = TextField(default="")  # job names and exception types, no data
