"""Seat quotas: how many of an account's contracted seats each sub-account may hold.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import AutoField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Tenant, User


class SeatQuota(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, unique=True, on_delete="CASCADE", backref="+")
    seats = IntegerField()
    set_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    set_at = DateTimeField()

    class Meta:
        table_name = "seat_quota"


MODELS = [SeatQuota]


def up(db, migrator):
    create_frozen(db, MODELS)
