"""Reports: per-conversation timings and figures pre-aggregated per tenant and local day and month.

Frozen: these classes are the tables as this step created them (see the package docstring).
The timings of conversations that exist already are filled in from their messages, once:
the first agent reply after the opening message, and for resolved conversations their last
message as the best guess of when they were resolved (the status change was not dated).
"""

from peewee import AutoField, BigIntegerField, CharField, DateField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Conversation, Tenant, User


class ConversationTiming(FrozenModel):
    conversation = ForeignKeyField(Conversation, primary_key=True, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    first_response_at = DateTimeField(null=True, index=True)
    first_responder = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    resolved_at = DateTimeField(null=True, index=True)
    resolved_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "conversation_timing"


class ReportDay(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    day = DateField()
    dimension = CharField(max_length=8)
    key = IntegerField()
    opened = IntegerField()
    resolved = IntegerField()
    messages_in = IntegerField()
    messages_out = IntegerField()
    first_responses = IntegerField()
    first_response_seconds = BigIntegerField()
    resolution_seconds = BigIntegerField()
    computed_at = DateTimeField()

    class Meta:
        table_name = "report_day"
        indexes = ((("tenant", "dimension", "day", "key"), True), (("day",), False))


# One column per duration bucket and histogram (16 buckets: under 30 s ... a week and more).
for _prefix in ("fr", "rs"):
    for _n in range(16):
        ReportDay._meta.add_field(f"{_prefix}_{_n:02d}", IntegerField())



class ReportMonth(ReportDay):
    class Meta:
        table_name = "report_month"


MODELS = [ConversationTiming, ReportDay, ReportMonth]

_FIRST_REPLY = ("FROM message m WHERE m.conversation_id = c.id AND m.direction = 'out' "
                "AND m.id > (SELECT MIN(f.id) FROM message f WHERE f.conversation_id = c.id) ORDER BY m.id LIMIT 1")
BACKFILL = (
    "INSERT INTO conversation_timing (conversation_id, tenant_id, first_response_at, first_responder_id, "
    "resolved_at, resolved_by_id) "
    f"SELECT c.id, c.tenant_id, (SELECT m.created_at {_FIRST_REPLY}), (SELECT m.author_id {_FIRST_REPLY}), "
    "CASE WHEN c.status = 'resolved' THEN c.last_message_at END, "
    "CASE WHEN c.status = 'resolved' THEN c.assignee_id END FROM conversation c"
)


def up(db, migrator):
    create_frozen(db, MODELS)
    db.execute_sql(BACKFILL)
