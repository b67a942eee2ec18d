"""The base model: every table binds to the database proxy set up by the factory."""

from __future__ import annotations

import datetime as dt

from peewee import Model

from appliance.core import clock
from appliance.web.db import database_proxy


def utcnow() -> dt.datetime:
    """Naive UTC timestamps everywhere: SQLite and PostgreSQL compare them alike."""
    return clock.naive_now()


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False
