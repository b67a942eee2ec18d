"""Routing: who a conversation can be assigned to, round-robin by team, presence, capacity and
opt-in, the waiting queue the worker serves, teams in the UI and the API, and one audited
assignment call behind every way a person assigns (inbox, API, supervisor's view, queue job)."""

from __future__ import annotations

import pytest

from appliance.web.jobs import run_round
from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Channel, Conversation, Team, TeamMember
from appliance.web.models.live import LiveEvent
from appliance.web.models.tenancy import Membership, Tenant, User
from appliance.web.services import contacts, conversations, live, routing
from tests.helpers import PASSWORD, csrf_token, login


def _person(world, key, role="agent", name=None, **membership):
    """A new user with a membership in ``key`` (their own login, so presence and load are theirs alone)."""
    from appliance.web.services.passwords import hash_password

    tenant = world.tenants[key]
    n = User.select().count() + 1
    user = User.create(email=f"person{n}@{key.lower()}.test", name=name or f"person {n} {key}",
                       password_hash=hash_password(PASSWORD))
    Membership.create(user=user, tenant=tenant, role=role, **membership)
    return user


def _quiet(world, key):
    """Nobody of ``key`` takes round-robin work (so a test decides who does)."""
    Membership.update(available=False).where(Membership.tenant == world.tenants[key].id).execute()


def _arrive(world, key, channel=None, text="hello"):
    tenant = world.tenants[key]
    contact = contacts.create_contact(tenant, name=f"Customer of {key}")
    return conversations.start_conversation(channel or world.objects[key]["channel"], tenant, contact, text)


def _assign_events(conv):
    return list(AuditEvent.select().where(AuditEvent.action == "conversation.assign",
                                          AuditEvent.target == f"conversation:{conv.id}").order_by(AuditEvent.id))


def _team_channel(world, key, members=(), name="Billing"):
    tenant = world.tenants[key]
    team = routing.create_team(tenant, name, [u.id for u in members])
    channel = Channel.create(tenant=tenant, kind="webchat", name=f"{name} chat", team=team.id)
    return team, channel


# --- eligibility ---------------------------------------------------------------------------

def test_eligible_people_are_the_tenant_and_those_above_it(app, world):
    a1 = world.tenants["A1"]
    eligible = {u.id for u in routing.eligible_users(a1)}
    for key in ("A1", "A", "P"):
        assert {world.users[(key, r)].id for r in ("agent", "supervisor", "admin")} <= eligible
    for key in ("A2", "B", "B1"):
        assert not {world.users[(key, r)].id for r in ("agent", "supervisor", "admin")} & eligible
    # A deactivated user, or one whose only membership is in a deactivated tenant, is not.
    User.update(is_active=False).where(User.id == world.users[("A", "agent")].id).execute()
    assert not routing.can_take(world.users[("A", "agent")].id, a1)
    Tenant.update(is_active=False).where(Tenant.id == a1.id).execute()
    assert not routing.can_take(world.users[("A1", "agent")].id, Tenant.get_by_id(a1.id))


def test_another_tenants_agent_is_refused_on_every_path(app, client, world):
    conv = world.objects["A1"]["conversation"]
    before = conv.assignee_id
    for stranger in (world.users[("A2", "agent")].id, world.users[("B", "agent")].id):
        resp = client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A", "admin"),
                            json={"assignee_id": stranger})
        assert resp.status_code == 422 and "assignee_id" in resp.get_json()["message"]
    login(client, world.email("A1", "supervisor"))
    token = csrf_token(client, f"/t/{world.tenants['A1'].id}/conversations/{conv.id}")
    resp = client.post(f"/t/{world.tenants['A1'].id}/conversations/{conv.id}/assign",
                       data={"csrf_token": token, "assignee": str(world.users[("B1", "agent")].id)})
    assert resp.status_code == 422
    # A team of another tenant is refused too.
    resp = client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A", "admin"),
                        json={"team_id": world.objects["A2"]["team"].id})
    assert resp.status_code == 422 and "team_id" in resp.get_json()["message"]
    assert Conversation.get_by_id(conv.id).assignee_id == before
    assert _assign_events(conv) == []


def test_conversation_page_offers_everyone_eligible_and_the_teams(app, client, world):
    a1 = world.tenants["A1"]
    conv = world.objects["A1"]["conversation"]
    parent_agent = world.users[("A", "agent")]  # not shared: still eligible, a role at A reaches A1
    login(client, world.email("A1", "supervisor"))
    page = client.get(f"/t/{a1.id}/conversations/{conv.id}").get_data(as_text=True)
    card = page.split('id="assignment"', 1)[1].split("</section>", 1)[0]
    assert f'value="{parent_agent.id}"' in card and f'value="{world.users[("P", "admin")].id}"' in card
    assert f'value="{world.users[("A2", "agent")].id}"' not in card
    assert f'value="team-{world.objects["A1"]["team"].id}"' in card
    token = csrf_token(client, f"/t/{a1.id}/conversations/{conv.id}")
    done = client.post(f"/t/{a1.id}/conversations/{conv.id}/assign",
                       data={"csrf_token": token, "assignee": str(parent_agent.id)})
    assert done.status_code == 302 and Conversation.get_by_id(conv.id).assignee_id == parent_agent.id
    # Agents still see only "Me" and, for their own or unassigned work, "Nobody".
    agent = app.test_client()
    login(agent, world.email("A1", "agent"))
    card = agent.get(f"/t/{a1.id}/conversations/{conv.id}").get_data(as_text=True).split('id="assignment"', 1)[1]
    assert f'value="{parent_agent.id}"' not in card.split("</section>", 1)[0] and "team-" not in card


def test_assignees_api_lists_people_with_presence_and_load_and_teams(app, client, world):
    conv = world.objects["A1"]["conversation"]
    live.seen(world.users[("A1", "agent")].id, active=True)
    answer = client.get(f"/api/v1/conversations/{conv.id}/assignees", headers=world.headers("A1", "agent"))
    assert answer.status_code == 200
    body = answer.get_json()
    people = {p["id"]: p for p in body["people"]}
    agent = people[world.users[("A1", "agent")].id]
    assert (agent["status"], agent["open"]) == ("online", 1)  # the world's A1 conversation
    assert world.users[("A2", "agent")].id not in people and world.users[("A", "admin")].id in people
    assert [t["id"] for t in body["teams"]] == [world.objects["A1"]["team"].id]
    assert client.get(f"/api/v1/conversations/{conv.id}/assignees",
                      headers=world.headers("A2", "admin")).status_code == 404


# --- round-robin ---------------------------------------------------------------------------

def test_a_team_conversation_goes_to_the_teams_members_only(app, world, clock):
    a1 = world.tenants["A1"]
    _quiet(world, "A1")
    inside, outside = _person(world, "A1"), _person(world, "A1")
    parent = world.users[("A", "agent")]  # a member at A (not shared) in A1's team
    team, channel = _team_channel(world, "A1", [inside, parent])
    got = set()
    for _ in range(4):
        clock.advance(seconds=1)
        got.add(_arrive(world, "A1", channel).assignee_id)
    assert got == {inside.id, parent.id}
    # Without a team the tenant's own agents (and shared ones) take it: the parent's is not shared.
    assert _arrive(world, "A1").assignee_id == outside.id
    assert routing.pick_agent(a1, team.id) is not None


def test_online_members_before_away_before_offline_within_a_team(app, world, clock):
    _quiet(world, "A1")
    offline, away, online = (_person(world, "A1") for _ in range(3))
    _, channel = _team_channel(world, "A1", [offline, away, online])
    live.seen(away.id, active=True)
    clock.advance(seconds=app.extensions["appliance_instance"]["presence_away_seconds"] + 5)
    live.seen(away.id)
    live.seen(online.id, active=True)
    assert [_arrive(world, "A1", channel).assignee_id for _ in range(2)] == [online.id, online.id]
    Membership.update(available=False).where(Membership.user == online.id).execute()
    assert _arrive(world, "A1", channel).assignee_id == away.id


def test_capacity_tenant_default_and_member_override(app, world, clock):
    a1 = world.tenants["A1"]
    _quiet(world, "A1")
    first, second = _person(world, "A1"), _person(world, "A1")
    routing.set_tenant_capacity(a1, 1, actor_id=world.users[("A1", "admin")].id)
    got = [_arrive(world, "A1").assignee_id for _ in range(2)]
    assert sorted(got) == sorted([first.id, second.id])
    full = _arrive(world, "A1")  # both hold one open conversation: at capacity
    assert full.assignee_id is None and full.waiting_since is not None
    # A member's own capacity wins over the tenant's.
    routing.set_member_routing(Membership.get(Membership.user == second.id), capacity=2)
    assert _arrive(world, "A1").assignee_id == second.id
    assert _arrive(world, "A1").assignee_id is None
    # Resolved and pending conversations do not count against capacity.
    held = Conversation.select().where(Conversation.assignee == first.id).get()
    conversations.set_status(held, "resolved")
    assert _arrive(world, "A1").assignee_id == first.id
    with pytest.raises(conversations.ServiceError, match="capacity"):
        routing.set_member_routing(Membership.get(Membership.user == first.id), capacity=routing.MAX_CAPACITY + 1)


def test_supervisors_and_admins_take_work_only_when_opted_in(app, world, clock):
    a1 = world.tenants["A1"]
    Membership.update(available=False).where(Membership.id == world.members[("A1", "agent")].id).execute()
    conv = _arrive(world, "A1")
    assert conv.assignee_id is None and conv.waiting_since is not None  # the admin and supervisor oversee
    admin = Membership.get_by_id(world.members[("A1", "admin")].id)
    routing.set_member_routing(admin, takes_conversations=True)
    assert _arrive(world, "A1").assignee_id == admin.user_id
    assert routing.pick_agent(a1).user_id == admin.user_id


def test_the_statement_composed_once_serves_every_tenant_with_its_own_values(app, world, clock):
    """pick_agent composes its SQL once per shape (team or not, depth) and binds each call's values."""
    for key in ("A1", "A2", "B1", "A1"):  # three sub-accounts: one shape
        clock.advance(seconds=1)
        assert routing.pick_agent(world.tenants[key]).user_id == world.users[(key, "agent")].id
    team = world.objects["B1"]["team"]
    assert routing.pick_agent(world.tenants["B1"], team.id) is None  # no members yet
    routing.add_member(team, world.users[("B", "supervisor")].id)
    assert routing.pick_agent(world.tenants["B1"], team.id) is None  # a supervisor, not opted in
    routing.add_member(team, world.users[("B", "agent")].id)  # a role at B reaches B1
    assert routing.pick_agent(world.tenants["B1"], team.id).user_id == world.users[("B", "agent")].id
    assert routing.pick_agent(world.tenants["A1"], world.objects["A1"]["team"].id) is None


# --- the waiting queue ---------------------------------------------------------------------

def test_waiting_team_conversations_go_to_a_member_once_one_can_take_them(app, world, clock):
    _quiet(world, "A1")
    team, channel = _team_channel(world, "A1", [])
    first = _arrive(world, "A1", channel, "first")
    clock.advance(minutes=1)
    second = _arrive(world, "A1", channel, "second")
    assert (first.assignee_id, second.assignee_id) == (None, None)
    assert run_round(app, [routing.queue_job]) == []
    assert Conversation.get_by_id(first.id).assignee_id is None  # nobody in the team yet
    member = _person(world, "A1", capacity=1)
    routing.add_member(team, member.id)
    since = LiveEvent.select().order_by(LiveEvent.id.desc()).first().id
    assert run_round(app, [routing.queue_job]) == []  # oldest first, within the member's capacity of 1
    first, second = Conversation.get_by_id(first.id), Conversation.get_by_id(second.id)
    assert (first.assignee_id, first.waiting_since) == (member.id, None)
    assert second.assignee_id is None and second.waiting_since is not None
    assert LiveEvent.select().where(LiveEvent.id > since, LiveEvent.conversation_id == first.id,
                                    LiveEvent.kind == "assignment").count() == 1
    event = _assign_events(first)[-1]
    assert event.actor_id is None and '"via": "queue"' in event.details
    # A second round (or a second host) hands out nothing more while the member is full ...
    assert routing.route_waiting() == 0
    # ... and the next one when the first is resolved.
    conversations.set_status(first, "resolved")
    assert routing.route_waiting() == 1
    assert Conversation.get_by_id(second.id).assignee_id == member.id


def test_a_queue_nobody_serves_does_not_hold_back_the_others(app, world, clock):
    _quiet(world, "A1")
    _, empty_team_channel = _team_channel(world, "A1", [], name="Nobody")
    for _ in range(3):
        _arrive(world, "A1", empty_team_channel)
    clock.advance(minutes=1)
    plain = _arrive(world, "A1")
    Membership.update(available=True).where(Membership.id == world.members[("A1", "agent")].id).execute()
    assert routing.route_waiting() == 1
    assert Conversation.get_by_id(plain.id).assignee_id == world.users[("A1", "agent")].id


def test_unassigning_puts_an_open_conversation_back_in_the_queue(app, world, clock):
    conv = world.objects["A1"]["conversation"]
    conversations.assign(conv, None, actor_id=world.users[("A1", "supervisor")].id, via="test")
    assert Conversation.get_by_id(conv.id).waiting_since is not None
    assert routing.route_waiting() == 1
    assert Conversation.get_by_id(conv.id).assignee_id == world.users[("A1", "agent")].id
    # Resolved while waiting: it leaves the queue.
    conversations.assign(conv, None)
    conversations.set_status(conv, "resolved")
    assert routing.route_waiting() == 0
    assert Conversation.get_by_id(conv.id).waiting_since is None


def test_a_reply_takes_a_waiting_conversation_out_of_the_queue(app, world):
    _quiet(world, "A1")
    conv = _arrive(world, "A1")
    assert conv.waiting_since is not None
    conversations.add_message(conv, "out", "on it", author=world.users[("A1", "supervisor")].id)
    assert Conversation.get_by_id(conv.id).waiting_since is None


def test_assigning_to_a_team_routes_among_its_members_or_waits(app, client, world, clock):
    a1 = world.tenants["A1"]
    conv = world.objects["A1"]["conversation"]
    member = _person(world, "A1")
    team = routing.create_team(a1, "Tier 2", [member.id])
    empty = routing.create_team(a1, "Tier 3")
    login(client, world.email("A1", "supervisor"))
    url = f"/t/{a1.id}/conversations/{conv.id}"
    token = csrf_token(client, url)
    done = client.post(f"{url}/assign", data={"csrf_token": token, "assignee": f"team-{team.id}"})
    assert done.status_code == 302
    conv = Conversation.get_by_id(conv.id)
    assert (conv.team_id, conv.assignee_id) == (team.id, member.id)
    client.post(f"{url}/assign", data={"csrf_token": token, "assignee": f"team-{empty.id}"})
    conv = Conversation.get_by_id(conv.id)
    assert (conv.team_id, conv.assignee_id) == (empty.id, None) and conv.waiting_since is not None
    assert "waiting since" in client.get(url).get_data(as_text=True)
    # An agent cannot move work to a team.
    agent = app.test_client()
    login(agent, world.email("A1", "agent"))
    refused = agent.post(f"{url}/assign", data={"csrf_token": csrf_token(agent, url), "assignee": f"team-{team.id}"})
    assert refused.status_code == 403
    # The API: team_id alone routes among the team's members.
    api = client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "supervisor"),
                       json={"team_id": team.id}).get_json()
    assert (api["team_id"], api["assignee_id"], api["waiting_since"]) == (team.id, member.id, None)


# --- one audited call ----------------------------------------------------------------------

def test_every_assignment_path_leaves_one_audit_row(app, client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    conv = world.objects["A1"]["conversation"]
    supervisor = world.users[("A1", "supervisor")]
    login(client, supervisor.email)
    url = f"/t/{a1.id}/conversations/{conv.id}"
    client.post(f"{url}/assign", data={"csrf_token": csrf_token(client, url), "assignee": "me"})
    client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "supervisor"),
                 json={"assignee_id": world.users[("A1", "agent")].id})
    boss = app.test_client()
    login(boss, world.email("A", "supervisor"))
    token = csrf_token(boss, f"/t/{a.id}/supervisor")
    assert boss.post(f"/t/{a.id}/supervisor/assign",
                     data={"csrf_token": token, "conversation": str(conv.id), "assignee": "none"}).status_code == 302
    routing.route_waiting()
    events = _assign_events(conv)
    vias = [e.details for e in events]
    assert all(f'"via": "{via}"' in d for via, d in zip(("inbox", "api", "supervisor", "queue"), vias, strict=True))
    assert [e.actor_id for e in events] == [supervisor.id, supervisor.id, world.users[("A", "supervisor")].id, None]
    assert f'"previous": {supervisor.id}' in events[1].details
    # The supervisor's view still shows the reassign form for what is open.
    assert 'id="assignee-' in boss.get(f"/t/{a.id}/supervisor").get_data(as_text=True)


# --- teams and settings: API ---------------------------------------------------------------

def test_teams_in_the_api(app, client, world):
    a1 = world.tenants["A1"]
    h = world.headers("A1", "admin")
    agent, parent = world.users[("A1", "agent")].id, world.users[("A", "agent")].id
    made = client.post(f"/api/v1/tenants/{a1.id}/teams", headers=h, json={"name": "Returns", "member_ids": [agent]})
    assert made.status_code == 201, made.get_data(as_text=True)
    team = made.get_json()
    assert team["member_ids"] == [agent]
    changed = client.patch(f"/api/v1/teams/{team['id']}", headers=h,
                           json={"name": "Returns and refunds", "member_ids": [parent]}).get_json()
    assert (changed["name"], changed["member_ids"]) == ("Returns and refunds", [parent])
    listed = client.get(f"/api/v1/tenants/{a1.id}/teams", headers=world.headers("A1", "agent")).get_json()["items"]
    assert {t["name"]: t["member_ids"] for t in listed}["Returns and refunds"] == [parent]
    # Members from a sibling or another account, or not user ids at all, are refused.
    for bad in ([world.users[("A2", "agent")].id], [world.users[("B", "agent")].id], ["x"], [True]):
        resp = client.patch(f"/api/v1/teams/{team['id']}", headers=h, json={"member_ids": bad})
        assert resp.status_code == 422, bad
    assert client.patch(f"/api/v1/teams/{team['id']}", headers=world.headers("A1", "supervisor"),
                        json={"name": "x"}).status_code == 403
    assert client.get(f"/api/v1/teams/{team['id']}", headers=world.headers("A2", "admin")).status_code == 404
    channel = world.objects["A1"]["channel"]
    client.patch(f"/api/v1/channels/{channel.id}", headers=h, json={"team_id": team["id"]})
    assert client.delete(f"/api/v1/teams/{team['id']}", headers=h).get_json() == {"deleted": team["id"]}
    assert Team.get_or_none(Team.id == team["id"]) is None
    assert Channel.get_by_id(channel.id).team_id is None  # the channel goes on without a team
    assert not TeamMember.select().where(TeamMember.team == team["id"]).exists()
    actions = [e.action for e in AuditEvent.select().where(AuditEvent.target == f"team:{team['id']}")]
    assert actions == ["team.create", "team.update", "team.members", "team.delete"]


def test_routing_settings_in_the_api(app, client, world):
    a1 = world.tenants["A1"]
    h = world.headers("A1", "admin")
    assert client.patch(f"/api/v1/tenants/{a1.id}/routing", headers=h, json={"agent_capacity": 3}).get_json() == {
        "tenant_id": a1.id, "agent_capacity": 3}
    assert client.get(f"/api/v1/tenants/{a1.id}/routing",
                      headers=world.headers("A1", "supervisor")).get_json()["agent_capacity"] == 3
    assert client.patch(f"/api/v1/tenants/{a1.id}/routing", headers=world.headers("A1", "supervisor"),
                        json={"agent_capacity": 3}).status_code == 403
    assert client.patch(f"/api/v1/tenants/{a1.id}/routing", headers=h,
                        json={"agent_capacity": 5000}).status_code == 422
    member = world.members[("A1", "supervisor")]
    answer = client.patch(f"/api/v1/members/{member.id}", headers=h,
                          json={"takes_conversations": True, "capacity": 2, "available": True}).get_json()
    assert (answer["takes_conversations"], answer["capacity"], answer["available"]) == (True, 2, True)
    cleared = client.patch(f"/api/v1/members/{member.id}", headers=h, json={"capacity": None}).get_json()
    assert cleared["capacity"] is None
    assert AuditEvent.select().where(AuditEvent.action == "member.routing").count() == 2


# --- teams and settings: UI ----------------------------------------------------------------

def test_teams_page_manages_teams_members_and_routing(app, client, world):
    a1 = world.tenants["A1"]
    page = f"/t/{a1.id}/admin/teams"
    supervisor = app.test_client()
    login(supervisor, world.email("A1", "supervisor"))
    assert supervisor.get(page).status_code == 403
    login(client, world.email("A1", "admin"))
    html = client.get(page).get_data(as_text=True)
    assert "team A1" in html and 'id="routing-members"' in html
    token = csrf_token(client, page)
    assert client.post(page, data={"csrf_token": token, "name": "Escalations"}).status_code == 302
    team = Team.get(Team.name == "Escalations", Team.tenant == a1.id)
    agent, stranger = world.users[("A1", "agent")], world.users[("A2", "agent")]
    assert client.post(f"{page}/{team.id}/members", data={"csrf_token": token, "user_id": str(agent.id)}
                       ).status_code == 302
    assert client.post(f"{page}/{team.id}/members", data={"csrf_token": token, "user_id": str(stranger.id)}
                       ).status_code == 422
    assert [m.user_id for m in TeamMember.select().where(TeamMember.team == team.id)] == [agent.id]
    assert client.post(f"{page}/{team.id}", data={"csrf_token": token, "name": "Escalated"}).status_code == 302
    assert Team.get_by_id(team.id).name == "Escalated"
    client.post(f"{page}/{team.id}/members/remove", data={"csrf_token": token, "user_id": str(agent.id)})
    assert not TeamMember.select().where(TeamMember.team == team.id).exists()
    # Routing: the tenant's capacity, a supervisor's opt-in and own capacity.
    routing_url = f"/t/{a1.id}/admin/routing"
    assert client.post(routing_url, data={"csrf_token": token, "agent_capacity": "4"}).status_code == 302
    assert Tenant.get_by_id(a1.id).agent_capacity == 4
    assert client.post(routing_url, data={"csrf_token": token, "agent_capacity": "many"}).status_code == 422
    member = world.members[("A1", "supervisor")]
    client.post(f"{routing_url}/members/{member.id}",
                data={"csrf_token": token, "takes_conversations": "1", "capacity": "2"})
    member = Membership.get_by_id(member.id)
    assert (member.takes_conversations, member.capacity) == (True, 2)
    # A team of another tenant is not reachable through this tenant's page.
    other = world.objects["A2"]["team"]
    assert client.post(f"{page}/{other.id}/delete", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{page}/{team.id}/delete", data={"csrf_token": token}).status_code == 302
    assert Team.get_or_none(Team.id == team.id) is None
    # The channel's team is set on the Channels page.
    channel = world.objects["A1"]["channel"]
    keep = world.objects["A1"]["team"]
    client.post(f"/t/{a1.id}/admin/channels/{channel.id}",
                data={"csrf_token": token, "is_active": "1", "team_id": str(keep.id)})
    assert Channel.get_by_id(channel.id).team_id == keep.id


def test_the_queue_job_skips_a_conversation_another_host_holds(app, world, clock, instance):
    """Two workers at once: what one holds (its row locked) the other passes by, so no
    waiting conversation is handed out twice. SQLite has one writer at a time anyway."""
    if not instance.database_url.startswith("postgres"):
        pytest.skip("row locks with SKIP LOCKED are PostgreSQL's; SQLite's write lock serialises the job")
    from appliance.web import db as dbmod

    _quiet(world, "A1")
    held = _arrive(world, "A1", text="held")
    clock.advance(seconds=1)
    free = _arrive(world, "A1", text="free")
    Membership.update(available=True).where(Membership.id == world.members[("A1", "agent")].id).execute()
    other_host = dbmod.open_database(instance.database_url)
    with other_host.connection_context(), other_host.atomic():
        other_host.execute_sql('SELECT id FROM "conversation" WHERE id = %s FOR UPDATE', (held.id,))
        assert routing.route_waiting() == 1
    assert Conversation.get_by_id(free.id).assignee_id == world.users[("A1", "agent")].id
    assert Conversation.get_by_id(held.id).assignee_id is None  # the other host's to hand out
    assert routing.route_waiting() == 1  # released: the next round takes it
    assert [len(_assign_events(c)) for c in (held, free)] == [1, 1]
