"""Daily metering: per tenant per local day, counted once into ``UsageDay`` rows.

Billing and the customer's usage pages read these rows, never the messages, so message
retention can prune old conversations without changing an invoice. Recomputing a day
replaces its rows (idempotent), so the job can run on several hosts, be restarted, or
catch up after an outage.

* conversations: conversations started that local day;
* messages_in / messages_out: customer and agent messages (notes excluded);
* active_operators: distinct users who wrote a reply or an internal note that day
  (an assignment alone is not work, and its history is not kept: the current assignee
  of an old conversation says nothing about who held it on a past day);
* seats: memberships of active users in the tenant when the day is computed;
* programs: the programs in effect by the end of the day, own and inherited.
"""

from __future__ import annotations

import datetime as dt

from peewee import fn

from appliance.core.calendar import day_bounds, today, zone
from appliance.web.db import LOCK_METERING_DAY, serialized
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Conversation, Message
from appliance.web.models.licence import TenantProgram
from appliance.web.models.metering import UsageDay
from appliance.web.models.tenancy import Membership, Tenant, User

CATCH_UP_DAYS = 40  # an outage longer than this loses metering detail, not invoices already issued


def _grouped(query) -> dict[int, int]:
    return dict(query.tuples())


def count_day(day: dt.date, tz) -> dict[int, dict]:
    """Counts for every tenant that existed on ``day`` or has traffic dated on it, keyed by tenant id."""
    start, end = day_bounds(day, tz)
    conversations = _grouped(
        Conversation.select(Conversation.tenant, fn.COUNT(Conversation.id))
        .where((Conversation.created_at >= start) & (Conversation.created_at < end))
        .group_by(Conversation.tenant))
    in_day = (Message.created_at >= start) & (Message.created_at < end)
    by_direction: dict[tuple[int, str], int] = {
        (tenant, direction): n for tenant, direction, n in
        Message.select(Message.tenant, Message.direction, fn.COUNT(Message.id))
        .where(in_day & Message.direction.in_(("in", "out")))
        .group_by(Message.tenant, Message.direction).tuples()}
    operators: dict[int, set[int]] = {}
    for tenant, author in (Message.select(Message.tenant, Message.author).distinct()
                           .where(in_day & Message.direction.in_(("out", "note")) & Message.author.is_null(False))
                           .tuples()):
        operators.setdefault(tenant, set()).add(author)
    seats = _grouped(
        Membership.select(Membership.tenant, fn.COUNT(Membership.id)).join(User)
        .where(User.is_active == True).group_by(Membership.tenant))
    programs: dict[int, set[str]] = {}
    for tenant, program in (TenantProgram.select(TenantProgram.tenant, TenantProgram.program)
                            .where(TenantProgram.effective_from < end).tuples()):
        programs.setdefault(tenant, set()).add(program)
    out = {}
    active = set(conversations) | {tenant for tenant, _ in by_direction} | set(operators)
    for tenant in Tenant.select(Tenant.id, Tenant.path, Tenant.created_at):
        if tenant.created_at >= end and tenant.id not in active:
            continue  # did not exist yet (data imported with older dates still counts)
        held = set(programs.get(tenant.id, set()))
        for ancestor in tenant.ancestor_ids():
            held |= programs.get(ancestor, set())
        out[tenant.id] = {
            "conversations": conversations.get(tenant.id, 0),
            "messages_in": by_direction.get((tenant.id, "in"), 0),
            "messages_out": by_direction.get((tenant.id, "out"), 0),
            "active_operators": len(operators.get(tenant.id, ())),
            "seats": seats.get(tenant.id, 0),
            "programs": ",".join(sorted(held)),
        }
    return out


def record_day(day: dt.date, tz) -> int:
    """Replace ``day``'s rows with fresh counts; returns the number of tenants recorded."""
    counts = count_day(day, tz)
    with serialized(LOCK_METERING_DAY):
        UsageDay.delete().where(UsageDay.day == day).execute()
        rows = [{"tenant": tenant_id, "day": day, "computed_at": utcnow(), **row} for tenant_id, row in counts.items()]
        for chunk in range(0, len(rows), 500):
            UsageDay.insert_many(rows[chunk:chunk + 500]).execute()
    return len(counts)


def days_to_record(now_day: dt.date, model=UsageDay) -> list[dt.date]:
    """Yesterday and today always (today is partial, yesterday may have had late messages), plus
    every earlier day since the last one recorded in ``model`` (a table with a ``day``), up to
    CATCH_UP_DAYS back."""
    last = model.select(fn.MAX(model.day)).scalar()
    first = now_day - dt.timedelta(days=1)
    if last is not None:
        if isinstance(last, str):
            last = dt.date.fromisoformat(last)
        first = min(first, last + dt.timedelta(days=1))
    else:
        oldest = Tenant.select(fn.MIN(Tenant.created_at)).scalar()
        if oldest is not None:
            first = min(first, oldest.date() if isinstance(oldest, dt.datetime) else first)
    first = max(first, now_day - dt.timedelta(days=CATCH_UP_DAYS))
    return [first + dt.timedelta(days=n) for n in range((now_day - first).days + 1)]


def metering_job(app) -> None:
    """The worker's daily metering: record every day not yet final."""
    tz = zone(app.extensions["appliance_instance"].settings)
    for day in days_to_record(today(tz)):
        record_day(day, tz)
