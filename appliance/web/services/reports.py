"""Reports: conversations opened and resolved, messages in and out, first-response and
resolution times, per channel, team, agent and day/week/month, for a tenant and its
sub-accounts, in the installation's local days.

Two halves, so that a report never reads a message:

* recording: ``record_day`` computes one local day for every tenant into ``ReportDay``
  rows (a total, and one row per channel, team and agent), replacing what that day had,
  so the worker's ``reports_job`` can run on several hosts, be restarted or catch up
  (the metering job's pattern). The two instants a conversation does not keep itself,
  its first reply and its resolution, are noted in ``ConversationTiming`` as they happen
  (``note_reply``, ``note_status``, called by services/conversations.py).
* reading: ``build`` sums those rows in SQL over any range of days; durations are kept
  as bucket histograms, so medians and 90th percentiles of any range come from summed
  bucket counts (interpolated inside the bucket, as Prometheus' histogram_quantile does).

Who an agent is for a figure: the author of a reply (messages out, first responses),
the assignee when the conversation was resolved (resolved, resolution time), and the
conversation's assignee when its day was computed (opened, messages in).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from peewee import fn

from appliance.core.calendar import day_bounds, today, zone
from appliance.web.db import LOCK_REPORT_DAY, serialized
from appliance.web.export import csv_text
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Channel, Conversation, Message, Team
from appliance.web.models.reports import BUCKETS, ConversationTiming, ReportDay, ReportMonth, bucket_columns
from appliance.web.models.tenancy import Tenant, User
from appliance.web.services import ServiceError
from appliance.web.services.metering import days_to_record

GRAINS = ("day", "week", "month")
MAX_DAYS = 400
REFRESH = dt.timedelta(minutes=5)  # a day's rows younger than this are not computed again
FR, RS = bucket_columns("fr"), bucket_columns("rs")
COUNTS = ("opened", "resolved", "messages_in", "messages_out", "first_responses", "first_response_seconds",
          "resolution_seconds")
SUMMED = COUNTS + tuple(FR) + tuple(RS)
FIGURES = ("opened", "resolved", "messages_in", "messages_out", "first_responses", "first_response_median",
           "first_response_p90", "resolution_median", "resolution_p90")


# --- events ------------------------------------------------------------------------------

def note_reply(conv: Conversation, message: Message) -> None:
    """An agent's reply: the conversation's first one starts its first-response time."""
    done = (ConversationTiming.update(first_response_at=message.created_at, first_responder=message.author_id)
            .where(ConversationTiming.conversation == conv.id, ConversationTiming.first_response_at.is_null())
            .execute())
    if not done:
        (ConversationTiming.insert(conversation=conv.id, tenant=conv.tenant_id, first_response_at=message.created_at,
                                   first_responder=message.author_id).on_conflict_ignore().execute())


def note_status(conv: Conversation) -> None:
    """Resolved: dated now and credited to the assignee; reopened: no longer counted as resolved."""
    resolved = conv.status == "resolved"
    values = {ConversationTiming.resolved_at: utcnow() if resolved else None,
              ConversationTiming.resolved_by: conv.assignee_id if resolved else None}
    (ConversationTiming.insert({ConversationTiming.conversation: conv.id, ConversationTiming.tenant: conv.tenant_id,
                                **values})
     .on_conflict(conflict_target=[ConversationTiming.conversation], update=values).execute())


# --- recording -------------------------------------------------------------------------

def bucket_of(seconds: float) -> int:
    for n, bound in enumerate(BUCKETS):
        if seconds < bound:
            return n
    return len(BUCKETS)


class _Day:
    """The figures of one local day, keyed (tenant, dimension, key)."""

    def __init__(self):
        self.rows: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(SUMMED, 0))

    def add(self, tenant, channel, team, agent, **amounts):
        for dimension, key in (("all", 0), ("channel", channel), ("team", team or 0), ("agent", agent or 0)):
            row = self.rows[(tenant, dimension, key)]
            for name, amount in amounts.items():
                row[name] += amount


def _seconds(later, earlier) -> int:
    return max(0, int((later - earlier).total_seconds()))


def _add_timed(figures: _Day, start, end, at, who, histogram, count: str, total: str) -> None:
    """Conversations whose ``at`` instant falls in the day: counted, summed and bucketed by its
    distance from the conversation's start, credited to ``who``."""
    timing = ConversationTiming
    for tenant, channel, team, person, opened_at, when in (
            timing.select(timing.tenant, Conversation.channel, Conversation.team, who, Conversation.created_at, at)
            .join(Conversation).where(at >= start, at < end).tuples()):
        seconds = _seconds(when, opened_at)
        figures.add(tenant, channel, team, person, **{count: 1, total: seconds, histogram[bucket_of(seconds)]: 1})


def count_day(day: dt.date, tz) -> dict[tuple, dict]:
    start, end = day_bounds(day, tz)
    figures = _Day()
    for tenant, channel, team, assignee, n in (
            Conversation.select(Conversation.tenant, Conversation.channel, Conversation.team, Conversation.assignee,
                                fn.COUNT(Conversation.id))
            .where(Conversation.created_at >= start, Conversation.created_at < end)
            .group_by(Conversation.tenant, Conversation.channel, Conversation.team, Conversation.assignee).tuples()):
        figures.add(tenant, channel, team, assignee, opened=n)
    for tenant, channel, team, assignee, direction, author, n in (
            Message.select(Message.tenant, Conversation.channel, Conversation.team, Conversation.assignee,
                           Message.direction, Message.author, fn.COUNT(Message.id))
            .join(Conversation)
            .where(Message.created_at >= start, Message.created_at < end, Message.direction.in_(("in", "out")))
            .group_by(Message.tenant, Conversation.channel, Conversation.team, Conversation.assignee,
                      Message.direction, Message.author).tuples()):
        if direction == "in":
            figures.add(tenant, channel, team, assignee, messages_in=n)
        else:
            figures.add(tenant, channel, team, author, messages_out=n)
    _add_timed(figures, start, end, ConversationTiming.first_response_at, ConversationTiming.first_responder, FR,
               "first_responses", "first_response_seconds")
    _add_timed(figures, start, end, ConversationTiming.resolved_at, ConversationTiming.resolved_by, RS,
               "resolved", "resolution_seconds")
    return figures.rows


def record_day(day: dt.date, tz) -> int:
    """Replace ``day``'s rows with fresh figures; returns the number of rows written."""
    rows = [{"tenant": tenant, "day": day, "dimension": dimension, "key": key, "computed_at": utcnow(), **values}
            for (tenant, dimension, key), values in count_day(day, tz).items()]
    with serialized(LOCK_REPORT_DAY):
        ReportDay.delete().where(ReportDay.day == day).execute()
        for chunk in range(0, len(rows), 200):
            ReportDay.insert_many(rows[chunk:chunk + 200]).execute()
        record_month(day.replace(day=1))
    return len(rows)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def record_month(first: dt.date) -> None:
    """Rebuild the month starting on ``first`` from its day rows (in the caller's transaction)."""
    in_month = (ReportMonth.day >= first) & (ReportMonth.day < _next_month(first))
    ReportMonth.delete().where(in_month).execute()
    group = (ReportDay.tenant, ReportDay.dimension, ReportDay.key)
    query = (ReportDay.select(*group, fn.MIN(ReportDay.day), *(fn.SUM(getattr(ReportDay, n)) for n in SUMMED),
                              fn.MAX(ReportDay.computed_at))
             .where(ReportDay.day >= first, ReportDay.day < _next_month(first)).group_by(*group))
    fields = [ReportMonth.tenant, ReportMonth.dimension, ReportMonth.key, ReportMonth.day,
              *(getattr(ReportMonth, n) for n in SUMMED), ReportMonth.computed_at]
    ReportMonth.insert_from(query, fields).execute()
    # MIN(day) above, then the month's first day: a literal date in INSERT ... SELECT would need a cast.
    ReportMonth.update(day=first).where(in_month).execute()


def _fresh(day: dt.date) -> bool:
    newest = ReportDay.select(fn.MAX(ReportDay.computed_at)).where(ReportDay.day == day).scalar()
    if isinstance(newest, str):
        newest = dt.datetime.fromisoformat(newest)
    return newest is not None and utcnow() - newest < REFRESH


def reports_job(app) -> None:
    """The worker's report rows: every day not yet final, at most every REFRESH each."""
    tz = zone(app.extensions["appliance_instance"].settings)
    for day in days_to_record(today(tz), ReportDay):
        if not _fresh(day):
            record_day(day, tz)


# --- reading ---------------------------------------------------------------------------

def percentile(counts: list[int], q: float) -> int | None:
    """The q-quantile of a bucket histogram in seconds, linear inside its bucket (None: no data).
    The open last bucket answers its lower bound."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for n, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BUCKETS[n - 1] if n else 0
            high = BUCKETS[n] if n < len(BUCKETS) else low
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return BUCKETS[-1]


def figures(sums: dict) -> dict:
    fr, rs = [int(sums.get(c) or 0) for c in FR], [int(sums.get(c) or 0) for c in RS]
    out = {name: int(sums.get(name) or 0) for name in ("opened", "resolved", "messages_in", "messages_out",
                                                        "first_responses")}
    out.update(first_response_median=percentile(fr, 0.5), first_response_p90=percentile(fr, 0.9),
               resolution_median=percentile(rs, 0.5), resolution_p90=percentile(rs, 0.9))
    return out


def period_of(day: dt.date, grain: str) -> dt.date:
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())  # ISO weeks start on Monday
    if grain == "month":
        return day.replace(day=1)
    return day


def check_range(start: dt.date, end: dt.date, grain: str) -> None:
    if grain not in GRAINS:
        raise ServiceError(f"grain must be one of: {', '.join(GRAINS)}.", 422)
    if end <= start or (end - start).days > MAX_DAYS:
        raise ServiceError(f"from/to: a range of 1 to {MAX_DAYS} days, 'to' exclusive.", 422)


def scope_of(tenant: Tenant, subaccount_id: int | None) -> Tenant:
    """The tenant reported on: ``tenant`` itself, or one tenant of its subtree."""
    if subaccount_id is None:
        return tenant
    sub = Tenant.get_or_none(Tenant.id == subaccount_id)
    if sub is None or not sub.path.startswith(tenant.path):
        raise ServiceError("subaccount: not a sub-account of this tenant.", 422)
    return sub


def _sources(start: dt.date, end: dt.date, whole_months: bool = True) -> list[tuple]:
    """(table, first, end) covering ``[start, end)`` once: whole months from ReportMonth, the days
    around them from ReportDay, so a range reads at most ~60 day rows and 13 month rows a key."""
    first, last = (start if start.day == 1 else _next_month(start)), end.replace(day=1)
    if not whole_months or first >= last:
        return [(ReportDay, start, end)]
    return [(ReportMonth, first, last), *((ReportDay, a, b) for a, b in ((start, first), (last, end)) if a < b)]


def _summed(tenants, sources, dimension, *group) -> list[dict]:
    """Sums of every figure per ``group``, over ``sources``; ``group`` names columns of ReportDay."""
    out = []
    for model, first, end in sources:
        columns = [fn.SUM(getattr(model, name)).alias(name) for name in SUMMED]
        keys = [getattr(model, field.name) for field in group]
        where = model.tenant.in_(tenants) & (model.day >= first) & (model.day < end)
        where &= (model.dimension == dimension) if isinstance(dimension, str) else model.dimension.in_(dimension)
        out += list(model.select(*keys, *columns).where(where).group_by(*keys).dicts())
    return out


def _add(into: dict, sums: dict) -> None:
    for name in SUMMED:
        into[name] = into.get(name, 0) + int(sums.get(name) or 0)


def _names(model, ids, label) -> dict[int, str]:
    return {row.id: getattr(row, label) for row in model.select(model.id, getattr(model, label))
            .where(model.id.in_([i for i in ids if i]))} if any(ids) else {}


def build(tenant: Tenant, start: dt.date, end: dt.date, *, grain: str = "day", subaccount_id: int | None = None):
    """The report on ``tenant`` (or one of its sub-accounts) for local days ``[start, end)``."""
    check_range(start, end, grain)
    scope = scope_of(tenant, subaccount_id)
    tenants = [t.id for t in Tenant.select(Tenant.id).where(Tenant.path.startswith(scope.path))]
    periods: dict[dt.date, dict] = {}
    day = start
    while day < end:
        periods.setdefault(period_of(day, grain), {})
        day += dt.timedelta(days=1)
    totals: dict = {}
    for row in _summed(tenants, _sources(start, end, grain == "month"), "all", ReportDay.day):
        on = row["day"] if isinstance(row["day"], dt.date) else dt.date.fromisoformat(row["day"])
        _add(periods[period_of(on, grain)], row)
        _add(totals, row)
    by_dimension: dict[str, dict[int, dict]] = {"channel": {}, "team": {}, "agent": {}}
    # IN, not !=: equality on the index's second column keeps the day range on its third.
    for row in _summed(tenants, _sources(start, end), list(by_dimension), ReportDay.dimension, ReportDay.key):
        _add(by_dimension[row["dimension"]].setdefault(row["key"], {}), row)
    names = {"channel": _names(Channel, list(by_dimension["channel"]), "name"),
             "team": _names(Team, list(by_dimension["team"]), "name"),
             "agent": _names(User, list(by_dimension["agent"]), "name")}
    none = {"channel": "(none)", "team": "No team", "agent": "Unassigned"}

    def table(dimension):
        rows = [{"id": key or None, "name": names[dimension].get(key, none[dimension] if not key else f"#{key}"),
                 **figures(sums)} for key, sums in by_dimension[dimension].items()]
        return sorted(rows, key=lambda r: (r["id"] is None, r["name"].lower()))

    return {
        "tenant_id": tenant.id,
        "subaccount_id": scope.id if scope.id != tenant.id else None,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "grain": grain,
        "totals": figures(totals),
        "series": [{"period": p.isoformat(), **figures(sums)} for p, sums in sorted(periods.items())],
        "channels": table("channel"),
        "teams": table("team"),
        "agents": table("agent"),
    }


DEFAULT_DAYS = 30


def _arg_day(args, name: str, default: dt.date) -> dt.date:
    text = (args.get(name) or "").strip()
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ServiceError(f"{name} must be a date like 2031-02-01, not {text[:20]!r}.", 422) from None


def from_query(tenant: Tenant, args, tz) -> dict:
    """The report a query string asks for: ``from``/``to`` (local days, 'to' exclusive; default
    the last 30 days), ``grain`` (day, week, month), ``subaccount`` (a tenant id below)."""
    end_default = today(tz) + dt.timedelta(days=1)
    start = _arg_day(args, "from", end_default - dt.timedelta(days=DEFAULT_DAYS))
    end = _arg_day(args, "to", end_default)
    raw_sub = (args.get("subaccount") or "").strip()
    if raw_sub and not (raw_sub.isdigit() and len(raw_sub) <= 18):
        raise ServiceError("subaccount must be a tenant id.", 422)
    return build(tenant, start, end, grain=args.get("grain") or "day", subaccount_id=int(raw_sub) if raw_sub else None)


TABLES = ("series", "channels", "teams", "agents")


def as_csv(report: dict, table: str, *, bom: bool = False) -> str:
    if table not in TABLES:
        raise ServiceError(f"table must be one of: {', '.join(TABLES)}.", 422)
    label = "period" if table == "series" else "name"
    header = (label, *FIGURES)
    return csv_text(header, ([row[label], *(("" if row[f] is None else row[f]) for f in FIGURES)]
                             for row in report[table]), bom=bom)


def duration(seconds: int | None) -> str:
    """Durations as people read them: 45 s, 12 min, 3.5 h, 2.1 d."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
