"""Reports' own rows: per-conversation timings and pre-aggregated figures per local day.

Reports read ``ReportDay`` and its monthly sums ``ReportMonth`` only (see appliance/web/services/reports.py), never the
messages, so a report over a year costs the same at ten thousand messages as at ten
million. ``ConversationTiming`` keeps the two instants a conversation does not keep
itself: its first reply and its latest resolution.
"""

from __future__ import annotations

from peewee import BigIntegerField, CharField, DateField, DateTimeField, ForeignKeyField, IntegerField

from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.contact_center import Conversation
from appliance.web.models.tenancy import Tenant, User

# A ReportDay row's dimension; its ``key`` is then a channel, team or user id (0: none).
DIMENSIONS = ("all", "channel", "team", "agent")


class ConversationTiming(BaseModel):
    conversation = ForeignKeyField(Conversation, primary_key=True, on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    first_response_at = DateTimeField(null=True, index=True)
    first_responder = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    # Set when the conversation is resolved, cleared when it is reopened: it counts as
    # resolved once, on the day of its latest resolution.
    resolved_at = DateTimeField(null=True, index=True)
    resolved_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")


class ReportDay(BaseModel):
    """One tenant's figures for one local day, in total or for one channel, team or agent."""

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    day = DateField()
    dimension = CharField(max_length=8)
    key = IntegerField(default=0)
    opened = IntegerField(default=0)
    resolved = IntegerField(default=0)
    messages_in = IntegerField(default=0)
    messages_out = IntegerField(default=0)
    first_responses = IntegerField(default=0)
    first_response_seconds = BigIntegerField(default=0)  # sums, for means; the histograms give percentiles
    resolution_seconds = BigIntegerField(default=0)
    computed_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("tenant", "dimension", "day", "key"), True), (("day",), False))


# Durations as histograms, one column per bucket, so SUM() in SQL merges any range of days
# and percentiles come from the merged counts. Bucket i holds BUCKETS[i-1] <= s < BUCKETS[i].
BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800)
HISTOGRAMS = ("fr", "rs")  # first response, resolution


def bucket_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{n:02d}" for n in range(len(BUCKETS) + 1)]


for _prefix in HISTOGRAMS:
    for _name in bucket_columns(_prefix):
        ReportDay._meta.add_field(_name, IntegerField(default=0))


class ReportMonth(ReportDay):
    """The same figures summed over a calendar month (``day`` is its first day), rebuilt from
    its days whenever one of them is: a year's report then reads twelve rows a key, not 365."""

    class Meta:
        table_name = "report_month"
