"""One UTC day's usage per tenant, from the core tables: counts only.

Definitions (what the vendor bills and sizes by):

* conversations: conversations started that day;
* messages: incoming and outgoing messages that day (internal notes excluded);
* active_operators: distinct users who sent an outgoing message that day;
* seats_used: memberships of active users in the tenant itself, when the report is made;
* programs: programs in effect for the tenant by the end of the day, own and
  inherited from ancestors (sub-accounts inherit their account's).

Every query groups by tenant in the database; nothing here reads a message
body, a contact or a user's name, so there is nothing personal to leak.
"""

from __future__ import annotations

import datetime as dt

from peewee import fn

from appliance.web.models.contact_center import Conversation, Message
from appliance.web.models.licence import TenantProgram
from appliance.web.models.tenancy import Membership, Tenant, User


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


def _grouped(query) -> dict[int, int]:
    return {tenant_id: count for tenant_id, count in query.tuples()}


def _programs(end: dt.datetime) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    rows = TenantProgram.select(TenantProgram.tenant, TenantProgram.program).where(
        TenantProgram.effective_from < end
    )
    for tenant_id, program in rows.tuples():
        out.setdefault(tenant_id, set()).add(program)
    return out


def usage_for_day(day: dt.date, *, include_names: bool = False) -> list[dict]:
    start, end = day_bounds(day)
    conversations = _grouped(
        Conversation.select(Conversation.tenant, fn.COUNT(Conversation.id))
        .where((Conversation.created_at >= start) & (Conversation.created_at < end))
        .group_by(Conversation.tenant)
    )
    in_day = (Message.created_at >= start) & (Message.created_at < end)
    messages = _grouped(
        Message.select(Message.tenant, fn.COUNT(Message.id))
        .where(in_day & Message.direction.in_(("in", "out")))
        .group_by(Message.tenant)
    )
    operators = _grouped(
        Message.select(Message.tenant, fn.COUNT(fn.DISTINCT(Message.author)))
        .where(in_day & (Message.direction == "out") & Message.author.is_null(False))
        .group_by(Message.tenant)
    )
    seats = _grouped(
        Membership.select(Membership.tenant, fn.COUNT(Membership.id))
        .join(User)
        .where(User.is_active == True)
        .group_by(Membership.tenant)
    )
    programs = _programs(end)
    active = set(conversations) | set(messages)
    rows = []
    for tenant in Tenant.select(Tenant.id, Tenant.name, Tenant.path, Tenant.is_active).order_by(Tenant.id):
        if not tenant.is_active and tenant.id not in active:
            continue
        inherited = set()
        for ancestor in tenant.ancestor_ids() or [tenant.id]:
            inherited |= programs.get(ancestor, set())
        inherited |= programs.get(tenant.id, set())
        row = {
            "tenant": tenant.id,
            "conversations": conversations.get(tenant.id, 0),
            "messages": messages.get(tenant.id, 0),
            "active_operators": operators.get(tenant.id, 0),
            "seats_used": seats.get(tenant.id, 0),
            "programs": sorted(inherited),
        }
        if include_names:
            row["name"] = tenant.name
        rows.append(row)
    return rows
