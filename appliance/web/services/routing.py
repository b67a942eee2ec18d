"""Who takes a conversation: who may be assigned it, round-robin, teams, and the waiting queue.

* **Eligible** for a conversation of tenant T (assigned by a person): an active user with
  a membership in T or an ancestor of T (a role flows down the tree, so they see it), in a
  tenant that is active. Siblings' and sub-accounts' people never are.
* **Round-robin** (:func:`pick_agent`) hands an arriving conversation to one membership:
  without a team, T's own members and those its ancestors share down; with a team, the
  team's members who are eligible in T. Of those: available, agents (supervisors and admins
  only when they opted in, ``takes_conversations``), below their capacity (the member's own
  ``capacity``, else their tenant's ``agent_capacity``; none set: no limit), online before
  away before offline, then the person idle the longest. One UPDATE ... RETURNING: the
  choice and the turn taken are one statement on the ingest path.
* **Waiting**: a conversation nobody could take gets ``waiting_since``; :func:`queue_job`
  (the worker) hands waiting conversations, oldest first, to the first member who can take
  them (back from offline, below capacity again, just added to the team), once across hosts
  (rows locked with SKIP LOCKED on PostgreSQL; SQLite's write lock serialises the rest).
"""

from __future__ import annotations

from peewee import fn

from appliance.web.db import Prepared, is_postgres, write_transaction
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Conversation, Team, TeamMember
from appliance.web.models.tenancy import Membership, Tenant, User
from appliance.web.services import ServiceError, live

MAX_CAPACITY = 1000
QUEUE_BATCH = 500  # conversations the queue job hands out per round at most
# A member never assigned yet goes before everyone (text: compared as stored on SQLite, a timestamp on PostgreSQL).
NEVER = "1970-01-01 00:00:00"


# --- eligibility ---------------------------------------------------------------------------

def eligible_memberships(tenant: Tenant):
    """Memberships whose user may be assigned conversations of ``tenant`` (see the module docstring)."""
    return (Membership.select(Membership, User).join(User).switch(Membership).join(Tenant)
            .where(Membership.tenant.in_(tenant.ancestor_ids()), User.is_active == True, Tenant.is_active == True))


def can_take(user_id: int, tenant: Tenant) -> bool:
    return eligible_memberships(tenant).where(Membership.user == user_id).exists()


def eligible_users(tenant: Tenant) -> list[User]:
    """Everyone who may be assigned ``tenant``'s conversations, by name, each once."""
    people: dict[int, User] = {}
    for member in eligible_memberships(tenant).order_by(User.name, User.id):
        people.setdefault(member.user_id, member.user)
    return list(people.values())


def assignees(tenant: Tenant) -> list[dict]:
    """:func:`eligible_users` with presence and open load, as the conversation page and the API show them."""
    people = eligible_users(tenant)
    presence = live.presence_of([u.id for u in people], **live.thresholds())
    load = open_load(u.id for u in people)
    return [{"id": u.id, "name": u.name, "email": u.email, "status": presence[u.id], "open": load[u.id]}
            for u in people]


def open_load(user_ids) -> dict[int, int]:
    """Open conversations held by each of ``user_ids``, in every tenant (one grouped count)."""
    ids = list(user_ids)
    if not ids:
        return {}
    rows = (Conversation.select(Conversation.assignee, fn.COUNT(Conversation.id))
            .where(Conversation.assignee.in_(ids), Conversation.status == "open")
            .group_by(Conversation.assignee).tuples())
    return {uid: 0 for uid in ids} | dict(rows)


# --- round-robin ---------------------------------------------------------------------------

def _routable():
    """Where-clause on a Membership (joined with its User and Tenant) that may get round-robin work now."""
    load = (Conversation.select(fn.COUNT(Conversation.id))
            .where(Conversation.assignee == Membership.user, Conversation.status == "open"))
    limit = fn.COALESCE(Membership.capacity, Tenant.agent_capacity)
    return ((Membership.available == True) & (User.is_active == True) & (Tenant.is_active == True)
            & ((Membership.role == "agent") | (Membership.takes_conversations == True))
            & (limit.is_null() | (load < limit)))


def _scope(by_team: bool, scope):
    """Who may be chosen, by ids: without a team ``scope`` is (tenant, its ancestors...): the
    tenant's own members and those an ancestor shares down (access.shared_down's rule); with a
    team it is (the tenant and its ancestors..., team): the team's members holding a role there."""
    if by_team:
        *tenant_ids, team_id = scope
        return (Membership.tenant.in_(tenant_ids)
                & Membership.user.in_(TeamMember.select(TeamMember.user).where(TeamMember.team == team_id)))
    own, *ancestors = scope
    return (Membership.tenant == own) | (Membership.tenant.in_(ancestors) & (Membership.shared == True))


def _pick_statement(by_team: bool, now, seen_since, active_since, *scope):
    turns = Membership.alias("turns")
    last_turn = turns.select(fn.MAX(turns.last_assigned_at)).where(turns.user == Membership.user)
    chosen = (Membership.select(Membership.id).join(User).switch(Membership).join(Tenant)
              .where(_routable(), _scope(by_team, scope))
              .order_by(live.presence_rank(Membership.user, seen_since, active_since),
                        fn.COALESCE(last_turn, NEVER), Membership.id)
              .limit(1))
    return (Membership.update(last_assigned_at=now).where(Membership.id == chosen)
            .returning(Membership.id, Membership.user, Membership.tenant))


# Composing this statement costs some 30 times what running it does (peewee builds SQL in
# Python), so each shape (with or without a team, the tree's depth) is composed once.
_PICKS: dict[tuple, Prepared] = {}


def _prepared(by_team: bool, size: int) -> Prepared:
    key = (by_team, size)
    if key not in _PICKS:
        _PICKS[key] = Prepared(lambda *values: _pick_statement(by_team, *values))
    return _PICKS[key]


def pick_agent(tenant: Tenant, team: Team | int | None = None) -> Membership | None:
    """The membership that takes the next conversation, its turn taken; None: nobody can now.

    One statement: the UPDATE that sets ``last_assigned_at`` chooses the row, RETURNING says
    which. Turns are per person (the latest turn among their memberships), so someone with a
    membership in an account and in its sub-account is not picked twice as often.
    """
    team_id = team.id if isinstance(team, Team) else team
    if team_id is None:  # the tenant first, then its ancestors (ancestor_ids ends with the tenant itself)
        scope = [tenant.id, *(t for t in tenant.ancestor_ids() if t != tenant.id)]
    else:
        scope = [*tenant.ancestor_ids(), team_id]
    now = utcnow()
    rows = list(_prepared(team_id is not None, len(scope))(now, *live.since(now), *scope))
    if not rows:
        return None
    row = rows[0]
    return Membership(id=row.id, user=row.user_id, tenant=row.tenant_id, last_assigned_at=now)


# --- settings ------------------------------------------------------------------------------

def _capacity(value, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise ServiceError(f"{field}: a whole number of open conversations from 0 to {MAX_CAPACITY}, "
                           "or empty for no limit.", 422)
    return value


def set_tenant_capacity(tenant: Tenant, capacity, *, actor_id=None) -> Tenant:
    """The most open conversations round-robin gives each member of ``tenant`` (None: no limit)."""
    tenant.agent_capacity = _capacity(capacity, "agent_capacity")
    with write_transaction():
        tenant.save(only=[Tenant.agent_capacity])
        record("routing.capacity", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}",
               capacity=tenant.agent_capacity)
    return tenant


def set_member_routing(member: Membership, *, takes_conversations=None, capacity=..., actor_id=None) -> Membership:
    """A member's opt-in (supervisors, admins) and own capacity (``...``: unchanged; None: the tenant's)."""
    fields = []
    if takes_conversations is not None:
        member.takes_conversations = bool(takes_conversations)
        fields.append(Membership.takes_conversations)
    if capacity is not ...:
        member.capacity = _capacity(capacity, "capacity")
        fields.append(Membership.capacity)
    if fields:
        with write_transaction():
            member.save(only=fields)
            record("member.routing", actor_id=actor_id, tenant_id=member.tenant_id, target=f"membership:{member.id}",
                   takes_conversations=member.takes_conversations, capacity=member.capacity)
    return member


# --- teams ---------------------------------------------------------------------------------

def _name(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("name: a team needs a name.", 422)
    if len(value.strip()) > 80:
        raise ServiceError("name: at most 80 characters.", 422)
    return value.strip()


def teams_of(tenant: Tenant) -> list[Team]:
    return list(Team.select().where(Team.tenant == tenant.id).order_by(fn.LOWER(Team.name), Team.id))


def team_of(tenant: Tenant, team_id) -> Team:
    """``team_id`` as a team of ``tenant``: a team elsewhere is refused, named in the message."""
    team = Team.get_or_none(Team.id == team_id, Team.tenant == tenant.id) if team_id is not None else None
    if team is None:
        raise ServiceError("team_id: no team of this organisation has that id (Teams page lists them).", 422)
    return team


def member_ids(teams) -> dict[int, list[int]]:
    """Each team's members' user ids (one query for all of ``teams``)."""
    out: dict[int, list[int]] = {t.id: [] for t in teams}
    if out:
        for team_id, user_id in (TeamMember.select(TeamMember.team, TeamMember.user)
                                 .where(TeamMember.team.in_(list(out))).order_by(TeamMember.id).tuples()):
            out[team_id].append(user_id)
    return out


def team_json(team: Team, members: list[int] | None = None) -> dict:
    if members is None:
        members = member_ids([team])[team.id]
    return team.to_json() | {"member_ids": members}


def _check_members(tenant: Tenant, user_ids) -> list[int]:
    ids = list(dict.fromkeys(user_ids))
    eligible = {m.user_id for m in eligible_memberships(tenant).where(Membership.user.in_(ids))} if ids else set()
    refused = [uid for uid in ids if uid not in eligible]
    if refused:
        raise ServiceError(f"member_ids: user {refused[0]} cannot take conversations of this organisation "
                           "(a member of it or of an organisation above it, active, can).", 422)
    return ids


def create_team(tenant: Tenant, name, member_ids_=(), *, actor_id=None) -> Team:
    name = _name(name)
    ids = _check_members(tenant, member_ids_)
    with write_transaction():
        team = Team.create(tenant=tenant.id, name=name)
        for uid in ids:
            TeamMember.create(team=team.id, user=uid)
        record("team.create", actor_id=actor_id, tenant_id=tenant.id, target=f"team:{team.id}", members=ids)
    return team


def rename_team(team: Team, name, *, actor_id=None) -> Team:
    team.name = _name(name)
    with write_transaction():
        team.save(only=[Team.name])
        record("team.update", actor_id=actor_id, tenant_id=team.tenant_id, target=f"team:{team.id}")
    return team


def delete_team(team: Team, *, actor_id=None) -> None:
    """Its channels and conversations keep going without a team (routed among the tenant's agents)."""
    with write_transaction():
        team.delete_instance()  # channel.team and conversation.team are SET NULL by the schema
        record("team.delete", actor_id=actor_id, tenant_id=team.tenant_id, target=f"team:{team.id}")


def add_member(team: Team, user_id: int, *, actor_id=None) -> Team:
    _check_members(Tenant.get_by_id(team.tenant_id), [user_id])
    with write_transaction():
        added = (TeamMember.insert(team=team.id, user=user_id).on_conflict_ignore().as_rowcount().execute())
        if added:
            record("team.member.add", actor_id=actor_id, tenant_id=team.tenant_id, target=f"team:{team.id}",
                   user=user_id)
    return team


def remove_member(team: Team, user_id: int, *, actor_id=None) -> Team:
    with write_transaction():
        removed = TeamMember.delete().where(TeamMember.team == team.id, TeamMember.user == user_id).execute()
        if removed:
            record("team.member.remove", actor_id=actor_id, tenant_id=team.tenant_id, target=f"team:{team.id}",
                   user=user_id)
    return team


def set_members(team: Team, user_ids, *, actor_id=None) -> Team:
    """Exactly ``user_ids`` in ``team`` afterwards (the API's PATCH)."""
    ids = _check_members(Tenant.get_by_id(team.tenant_id), user_ids)
    with write_transaction():
        TeamMember.delete().where(TeamMember.team == team.id, TeamMember.user.not_in(ids or [0])).execute()
        for uid in ids:
            TeamMember.insert(team=team.id, user=uid).on_conflict_ignore().execute()
        record("team.members", actor_id=actor_id, tenant_id=team.tenant_id, target=f"team:{team.id}", members=ids)
    return team


# --- the waiting queue ---------------------------------------------------------------------

def waiting():
    return Conversation.waiting_since.is_null(False)


def _forget_stale() -> None:
    """A conversation resolved, set pending or taken by a reply while waiting leaves the queue."""
    (Conversation.update(waiting_since=None)
     .where(waiting(), (Conversation.status != "open") | Conversation.assignee.is_null(False)).execute())


def _next_waiting(tenant_id: int, team_id: int | None):
    query = (Conversation.select().where(waiting(), Conversation.tenant == tenant_id,
                                         Conversation.team == team_id if team_id else Conversation.team.is_null(),
                                         Conversation.assignee.is_null(), Conversation.status == "open")
             .order_by(Conversation.waiting_since, Conversation.id).limit(1))
    return (query.for_update(skip_locked=True) if is_postgres() else query).first()


def route_waiting(limit: int = QUEUE_BATCH) -> int:
    """Hand waiting conversations to whoever can take them now; returns how many were handed out.

    Queue by queue (tenant and team), oldest first, until nobody of that queue can take
    more, so a queue nobody serves does not hold the others back.
    """
    from appliance.web.services import conversations

    with write_transaction():
        _forget_stale()
    queues = list(Conversation.select(Conversation.tenant, Conversation.team).where(waiting())
                  .group_by(Conversation.tenant, Conversation.team).order_by(fn.MIN(Conversation.waiting_since))
                  .tuples())
    handed = 0
    for tenant_id, team_id in queues:
        tenant = Tenant.get_by_id(tenant_id)
        if not tenant.is_active:
            continue  # a deactivated tenant's data is read-only: its queue waits for reactivation
        while handed < limit:
            with write_transaction():
                conv = _next_waiting(tenant_id, team_id)
                member = pick_agent(tenant, team_id) if conv is not None else None
                if member is None:
                    break
                conversations.assign(conv, member.user_id, actor_id=None, via="queue")
            handed += 1
    return handed


def queue_job(app) -> None:
    """Worker job: waiting conversations to the members who can take them now (idempotent)."""
    route_waiting()
