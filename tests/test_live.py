"""Live updates: the event streams (tenant-checked, resumable with Last-Event-ID, bounded in
time), the change feed they read, presence, and round-robin preferring online agents."""

from __future__ import annotations

import json
import time

import pytest

from appliance.web.models.live import LiveEvent
from appliance.web.services import conversations, live
from tests.helpers import login

SSE = {"Accept": "text/event-stream"}


def frames(text: str) -> list[dict]:
    """The event frames of an SSE body (comments and the opening cursor frame left out)."""
    out = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "event" in fields:
            out.append({"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])})
    return out


def opening_cursor(text: str) -> int:
    first = text.split("\n\n", 1)[0]
    return int(next(line for line in first.splitlines() if line.startswith("id: "))[4:])


@pytest.fixture
def short_streams(app):
    """Streams that end after a fraction of a second, so a test can read them whole."""
    settings = app.extensions["appliance_instance"].settings
    settings["live_stream_seconds"] = 0.3
    settings["live_poll_seconds"] = 0.05
    return app


def _agent(app, world, key="A", role="agent"):
    client = app.test_client()
    assert login(client, world.email(key, role)).status_code == 302
    return client


def test_inbox_stream_resumes_from_last_event_id_and_stays_in_its_tenant(short_streams, world):
    app = short_streams
    a, a1, b = world.tenants["A"], world.tenants["A1"], world.tenants["B"]
    agent = _agent(app, world)
    first = agent.get(f"/t/{a.id}/events", headers=SSE)
    assert first.status_code == 200
    assert first.mimetype == "text/event-stream"
    assert first.headers["X-Accel-Buffering"] == "no" and first.headers["Cache-Control"] == "no-store"
    body = first.get_data(as_text=True)
    assert "retry: 1000" in body and frames(body) == []  # no backlog for a fresh page
    cursor = opening_cursor(body)

    with app.app_context():
        conv_a = world.objects["A"]["conversation"]
        msg = conversations.add_message(conv_a, "in", "a second message")
        conversations.set_status(conv_a, "pending")
        conversations.assign(conv_a, world.users[("A", "agent")].id)
        conversations.add_message(world.objects["A1"]["conversation"], "in", "sub-account news")
        conversations.add_message(world.objects["B"]["conversation"], "in", "other tenant")

    seen = frames(agent.get(f"/t/{a.id}/events", headers=SSE | {"Last-Event-ID": str(cursor)})
                  .get_data(as_text=True))
    assert [(f["event"], f["conversation_id"]) for f in seen] == [
        ("message", conv_a.id), ("status", conv_a.id), ("assignment", conv_a.id)]
    assert seen[0]["message_id"] == msg.id and seen[0]["direction"] == "in"
    # Resuming after the first frame sends only what came after it.
    again = frames(agent.get(f"/t/{a.id}/events", headers=SSE | {"Last-Event-ID": str(seen[0]["id"])})
                   .get_data(as_text=True))
    assert [f["event"] for f in again] == ["status", "assignment"]
    # ?sub=1 adds the sub-accounts, never a sibling tree; B sees only B.
    with_sub = frames(agent.get(f"/t/{a.id}/events?sub=1", headers=SSE | {"Last-Event-ID": str(cursor)})
                      .get_data(as_text=True))
    assert {f["conversation_id"] for f in with_sub} == {conv_a.id, world.objects["A1"]["conversation"].id}
    agent_b = _agent(app, world, "B")
    in_b = frames(agent_b.get(f"/t/{b.id}/events", headers=SSE | {"Last-Event-ID": str(cursor)})
                  .get_data(as_text=True))
    assert {f["conversation_id"] for f in in_b} == {world.objects["B"]["conversation"].id}
    # Another tenant's stream is not there at all; a sub-account's agent does not reach up.
    assert agent_b.get(f"/t/{a.id}/events", headers=SSE).status_code == 404
    assert _agent(app, world, "A1").get(f"/t/{a.id}/events", headers=SSE).status_code == 404
    assert agent.get(f"/t/{a1.id}/events", headers=SSE).status_code == 200  # rights flow down


def test_conversation_stream_and_refusals(short_streams, world):
    app = short_streams
    a, b = world.tenants["A"], world.tenants["B"]
    conv_a, conv_b = world.objects["A"]["conversation"], world.objects["B"]["conversation"]
    agent = _agent(app, world)
    with app.app_context():
        cursor = live.newest_id()
        conversations.add_message(world.objects["A1"]["conversation"], "in", "elsewhere")
        conversations.add_message(conv_a, "note", "internal")
    seen = frames(agent.get(f"/t/{a.id}/conversations/{conv_a.id}/events",
                            headers=SSE | {"Last-Event-ID": str(cursor)}).get_data(as_text=True))
    assert [(f["conversation_id"], f["direction"]) for f in seen] == [(conv_a.id, "note")]
    # Tenant A's URL with B's conversation, and B's URL from A: 404 both.
    assert agent.get(f"/t/{a.id}/conversations/{conv_b.id}/events", headers=SSE).status_code == 404
    assert agent.get(f"/t/{b.id}/conversations/{conv_b.id}/events", headers=SSE).status_code == 404
    # Not an EventSource: told what this URL is instead of a hanging response.
    resp = agent.get(f"/t/{a.id}/events")
    assert resp.status_code == 406 and "EventSource" in resp.get_data(as_text=True)
    # Not logged in: to the login page, as every agent page.
    assert app.test_client().get(f"/t/{a.id}/events", headers=SSE).status_code == 302


def test_widget_stream_carries_replies_but_never_notes(short_streams, client, world):
    app = short_streams
    channel = world.objects["A"]["channel"]
    started = client.post(f"/widget/{channel.public_key}/messages", json={"body": "hello", "name": "Vi"})
    token, conv_id = started.get_json()["token"], started.get_json()["conversation_id"]
    with app.app_context():
        from appliance.web.models.contact_center import Conversation

        cursor = live.newest_id()
        conv = Conversation.get_by_id(conv_id)
        agent_id = world.users[("A", "agent")].id
        conversations.add_message(conv, "note", "internal: check id", author=agent_id)
        reply = conversations.add_message(conv, "out", "how can I help?", author=agent_id)
        conversations.add_message(world.objects["A"]["conversation"], "out", "someone else's", author=agent_id)
    resp = client.get(f"/widget/{channel.public_key}/events?token={token}",
                      headers=SSE | {"Last-Event-ID": str(cursor)})
    assert resp.status_code == 200 and resp.headers["X-Accel-Buffering"] == "no"
    assert [(f["conversation_id"], f["message_id"]) for f in frames(resp.get_data(as_text=True))] == [
        (conv_id, reply.id)]
    assert client.get(f"/widget/{channel.public_key}/events", headers=SSE).status_code == 400
    assert client.get(f"/widget/{channel.public_key}/events?token=forged", headers=SSE).status_code == 403
    other = world.objects["B"]["channel"]
    assert client.get(f"/widget/{other.public_key}/events?token={token}", headers=SSE).status_code == 403


def test_streams_past_the_per_process_cap_degrade_to_polling(short_streams, world):
    app = short_streams
    settings = app.extensions["appliance_instance"].settings
    settings["live_streams_per_process"] = 1
    settings["live_stream_seconds"] = 30
    a = world.tenants["A"]
    agent = _agent(app, world)
    held = agent.get(f"/t/{a.id}/events", headers=SSE, buffered=False)
    first = next(iter(held.response))  # the body runs: this stream holds the one slot
    assert b"retry: 1000" in (first if isinstance(first, bytes) else first.encode())
    with app.app_context():
        cursor = live.newest_id()
        conversations.add_message(world.objects["A"]["conversation"], "in", "while the slot is taken")
    started = time.monotonic()
    brief = agent.get(f"/t/{a.id}/events", headers=SSE | {"Last-Event-ID": str(cursor)}).get_data(as_text=True)
    assert time.monotonic() - started < 5  # answered at once, not held for 30 s
    assert "retry: 5000" in brief and [f["event"] for f in frames(brief)] == ["message"]
    held.close()  # the browser left: the slot is free again
    settings["live_stream_seconds"] = 0.2
    assert "retry: 1000" in agent.get(f"/t/{a.id}/events", headers=SSE).get_data(as_text=True)


def test_stream_ends_by_itself_and_ticks_presence(app, world):
    """The stream's own loop, with a fake monotonic clock: it lives ``lifetime`` seconds,
    pings every ``tick_every`` and reports presence on each ping."""
    now = [0.0]
    ticks = []
    with app.app_context():
        chunks = list(live.stream(live.Scope(tenant_id=world.tenants["A"].id), None, lifetime=60, poll=1,
                                  on_tick=lambda: ticks.append(now[0]), tick_every=15,
                                  sleep=lambda s: now.__setitem__(0, now[0] + s), monotonic=lambda: now[0]))
    assert chunks[-1] == ": reconnect\n\n"
    assert chunks.count(": ping\n\n") == 3 and ticks == [15.0, 30.0, 45.0]


def test_presence_online_away_offline(app, world, clock):
    settings = app.extensions["appliance_instance"].settings
    away, offline = settings["presence_away_seconds"], settings["presence_offline_seconds"]
    uid = world.users[("A", "agent")].id
    with app.app_context():
        t = live.thresholds()
        assert live.presence_of([uid], **t) == {uid: "offline"}
        live.seen(uid, active=True)
        assert live.presence_of([uid], **t) == {uid: "online"}
        # The page stays open (stream ticks) but nobody touches it: away.
        for _ in range(int(away // 30) + 1):
            clock.advance(seconds=30)
            live.seen(uid)
        assert live.presence_of([uid], **t) == {uid: "away"}
        live.seen(uid, active=True)
        assert live.presence_of([uid], **t) == {uid: "online"}
        clock.advance(seconds=offline + 1)  # the page was closed: no more stream
        assert live.presence_of([uid], **t) == {uid: "offline"}


def test_presence_heartbeat_route(app, world):
    a = world.tenants["A"]
    agent = _agent(app, world)
    page = agent.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert f'data-presence="/t/{a.id}/presence"' in page and f'data-live-stream="/t/{a.id}/events"' in page
    import re

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert agent.post(f"/t/{a.id}/presence").status_code == 400  # CSRF like every form post
    resp = agent.post(f"/t/{a.id}/presence", headers={"X-CSRFToken": token})
    assert resp.status_code == 200 and resp.get_json() == {"state": "online"}
    with app.app_context():
        uid = world.users[("A", "agent")].id
        assert live.presence_of([uid], **live.thresholds()) == {uid: "online"}


def test_supervisors_see_who_is_online_when_assigning(app, world):
    a = world.tenants["A"]
    conv = world.objects["A"]["conversation"]
    with app.app_context():
        live.seen(world.users[("A", "agent")].id, active=True)
    page = _agent(app, world, "A", "supervisor").get(f"/t/{a.id}/conversations/{conv.id}").get_data(as_text=True)
    assert "agent A (online, 1 open)" in page and "admin A (offline, 0 open)" in page


def test_round_robin_prefers_online_agents(app, world, clock):
    from appliance.web.models.tenancy import Membership

    tenant = world.tenants["B1"]
    with app.app_context():
        # B1 has three own members; all of them take work (supervisors and admins opted in).
        ids = [world.users[("B1", role)].id for role in ("admin", "supervisor", "agent")]
        Membership.update(last_assigned_at=None, takes_conversations=True).where(
            Membership.tenant == tenant.id).execute()
        idle_longest, online, away = ids
        # The longest-idle agent has no page open; round-robin would pick them first.
        Membership.update(last_assigned_at=clock.naive()).where(Membership.user.in_([online, away])).execute()
        live.seen(online, active=True)
        live.seen(away, active=True)
        clock.advance(seconds=app.extensions["appliance_instance"]["presence_away_seconds"] + 5)
        live.seen(online, active=True)
        live.seen(away)  # page open, idle
        # Online beats rotation: the online agent takes the next ones although just assigned.
        assert [conversations.pick_agent(tenant).user_id for _ in range(2)] == [online, online]
        # The online agent closes the page; the away one's stays open: away before offline.
        clock.advance(seconds=app.extensions["appliance_instance"]["presence_offline_seconds"] + 1)
        live.seen(away)
        assert conversations.pick_agent(tenant).user_id == away
        # Everyone offline: plain round-robin again (the longest idle first).
        clock.advance(seconds=3600)
        assert conversations.pick_agent(tenant).user_id == idle_longest


def test_old_events_are_pruned_by_the_worker_job(app, world, clock):
    from appliance.web.jobs import run_round

    with app.app_context():
        conversations.add_message(world.objects["A"]["conversation"], "in", "old news")
        before = LiveEvent.select().count()
        assert before > 0
        clock.advance(seconds=app.extensions["appliance_instance"]["live_event_retention_seconds"] + 1)
        conversations.add_message(world.objects["A"]["conversation"], "in", "fresh")
    assert run_round(app, [live.prune_job]) == []
    with app.app_context():
        assert [e.kind for e in LiveEvent.select()] == ["message"]
