"""Live updates: the change feed read by the event streams, and agents' presence.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import AutoField, BigAutoField, CharField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Tenant, User


class LiveEvent(FrozenModel):
    id = BigAutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    conversation_id = IntegerField(index=True)
    kind = CharField(max_length=20)
    message_id = IntegerField(null=True)
    direction = CharField(max_length=4, null=True)
    created_at = DateTimeField(index=True)

    class Meta:
        table_name = "live_event"


class Presence(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, unique=True, on_delete="CASCADE", backref="+")
    last_seen_at = DateTimeField()
    last_active_at = DateTimeField()

    class Meta:
        table_name = "presence"


MODELS = [LiveEvent, Presence]


def up(db, migrator):
    create_frozen(db, MODELS)
