"""The supervisor's live view: queues per team and channel, agents with presence and load,
and reassigning from there.

Everything is read live from the conversations (open ones only, through the
tenant/status index), never from the report rows, so it is right to the second.

* a queue's *waiting* count: its open conversations; *unassigned*: those nobody holds;
  *longest wait*: the age of its oldest unassigned open conversation;
* an agent's *load*: the open conversations assigned to them in the tenant and below.
"""

from __future__ import annotations

import datetime as dt
import heapq

from peewee import Case, fn

from appliance.web.access import shared_down
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Channel, Conversation, Team
from appliance.web.models.tenancy import Membership, Tenant, User
from appliance.web.services import ServiceError, conversations, live

OPEN_SHOWN = 50  # the oldest open conversations listed for reassigning


def _in_subtree(tenant: Tenant):
    return Conversation.tenant.in_(Tenant.select(Tenant.id).where(Tenant.path.startswith(tenant.path)))


def _open_in(tenant_id: int):
    """One tenant's open conversations. Equality on both leading columns of the (tenant, status)
    index, one query per tenant: with ``tenant IN (...)`` the planner's statistics (which cannot
    tell that few conversations are open) make it prefer scanning the whole table."""
    return (Conversation.tenant == tenant_id) & (Conversation.status == "open")


def _subtree_ids(tenant: Tenant) -> list[int]:
    return [t.id for t in Tenant.select(Tenant.id).where(Tenant.path.startswith(tenant.path))]


def _stamp(value):
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _open_groups(tenant: Tenant) -> list[tuple]:
    """Open conversations of the subtree counted per (team, channel, assignee), with the oldest
    unassigned one's start: one pass through the (tenant, status) index, whatever the history.
    No index orders these three columns, so the planner cannot trade that index for one that
    reads every conversation an agent ever had."""
    unassigned = Conversation.assignee.is_null()
    out = []
    for tenant_id in _subtree_ids(tenant):
        rows = (Conversation.select(Conversation.team, Conversation.channel, Conversation.assignee,
                                    fn.COUNT(Conversation.id),
                                    fn.MIN(Case(None, [(unassigned, Conversation.created_at)], None)))
                .where(_open_in(tenant_id))
                .group_by(Conversation.team, Conversation.channel, Conversation.assignee).tuples())
        out += [(team, channel, assignee, n, _stamp(oldest)) for team, channel, assignee, n, oldest in rows]
    return out


def _queues(groups: list[tuple], position: int, model) -> list[dict]:
    now, queues = utcnow(), {}
    for row in groups:
        key, assignee, n, oldest = row[position], row[2], row[3], row[4]
        queue = queues.setdefault(key, {"waiting": 0, "unassigned": 0, "oldest": None})
        queue["waiting"] += n
        if assignee is None:
            queue["unassigned"] += n
            queue["oldest"] = oldest if queue["oldest"] is None else min(queue["oldest"], oldest)
    names = {row.id: row.name for row in model.select(model.id, model.name)
             .where(model.id.in_([key for key in queues if key]))}
    out = [{"id": key, "name": names.get(key, "No team") if key else "No team", "waiting": q["waiting"],
            "unassigned": q["unassigned"],
            "longest_wait_seconds": int((now - q["oldest"]).total_seconds()) if q["oldest"] else None}
           for key, q in queues.items()]
    return sorted(out, key=lambda q: (-(q["longest_wait_seconds"] or -1), q["name"].lower()))


def agents(tenant: Tenant, groups: list[tuple] | None = None) -> list[dict]:
    """People who can take the tenant's conversations: members of it and of its sub-accounts,
    and the agents its ancestors share down, with presence and their open load."""
    subtree = Tenant.select(Tenant.id).where(Tenant.path.startswith(tenant.path))
    members = (Membership.select(Membership, User).join(User)
               .where((Membership.tenant.in_(subtree) | shared_down(Membership, tenant)), User.is_active == True)
               .order_by(User.name, Membership.id))
    people: dict[int, dict] = {}
    for member in members:
        person = people.setdefault(member.user_id, {"id": member.user_id, "name": member.user.name,
                                                     "email": member.user.email, "role": member.role,
                                                     "available": member.available})
        person["available"] = person["available"] or member.available
    load: dict[int, int] = {}
    for _team, _channel, assignee, n, _oldest in _open_groups(tenant) if groups is None else groups:
        load[assignee] = load.get(assignee, 0) + n
    presence = live.presence_of(list(people), **live.thresholds())
    for user_id, person in people.items():
        person["status"] = presence[user_id]
        person["open"] = load.get(user_id, 0)
    rank = {state: n for n, state in enumerate(live.PRESENCE_STATES)}
    return sorted(people.values(), key=lambda p: (rank[p["status"]], p["name"].lower()))


def open_conversations(tenant: Tenant, limit: int = OPEN_SHOWN) -> list[Conversation]:
    """The open conversations quiet the longest, for reassigning."""
    oldest = [Conversation.select().where(_open_in(tenant_id)).order_by(Conversation.last_message_at, Conversation.id)
              .limit(limit) for tenant_id in _subtree_ids(tenant)]
    return heapq.nsmallest(limit, (conv for query in oldest for conv in query),
                           key=lambda c: (c.last_message_at, c.id))


def eligible(people: list[dict], tenants: list[Tenant]) -> dict[int, list[dict]]:
    """For each of ``tenants``: the people of ``people`` who may take its conversations (members
    of it or of an ancestor, in an active tenant, as services/routing.py checks), in the order given."""
    reach = {t.id: set(t.ancestor_ids()) for t in tenants}
    wanted = set().union(*reach.values()) if reach else set()
    held: dict[int, set[int]] = {}
    for user_id, tenant_id in (Membership.select(Membership.user, Membership.tenant).join(Tenant)
                               .where(Membership.user.in_([p["id"] for p in people]),
                                      Membership.tenant.in_(list(wanted)), Tenant.is_active == True)
                               .tuples()) if people and wanted else ():
        held.setdefault(user_id, set()).add(tenant_id)
    return {tid: [p for p in people if held.get(p["id"], set()) & ancestors] for tid, ancestors in reach.items()}


def view(tenant: Tenant) -> dict:
    groups = _open_groups(tenant)
    return {"tenant_id": tenant.id, "teams": _queues(groups, 0, Team), "channels": _queues(groups, 1, Channel),
            "agents": agents(tenant, groups)}


def find_conversation(tenant: Tenant, conversation_id: int | None) -> Conversation:
    conv = None
    if conversation_id:
        conv = Conversation.get_or_none(Conversation.id == conversation_id, _in_subtree(tenant))
    if conv is None:
        raise ServiceError("conversation: no conversation of this organisation has that id.", 404)
    return conv


def reassign(conv: Conversation, user_id: int | None, *, actor_id: int) -> Conversation:
    """Hand ``conv`` to ``user_id`` (None: back to the queue), audited by the one assignment call."""
    return conversations.assign(conv, user_id, actor_id=actor_id, via="supervisor")
