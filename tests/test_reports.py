"""Reports against hand-counted fixtures: local days in Berlin (a reply at 22:20 UTC belongs to
the next local day), sub-account filtering, per channel/team/agent, the pages, CSV and API;
then the supervisor's live view and reassigning from it.

Durations are histogram quantiles (services/reports.py): each expected value below is
computed by hand from the bucket bounds 30, 60, 120, ... 600, 900, 1800, 3600, 7200 s.
"""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.core.calendar import zone
from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Conversation, Team
from appliance.web.models.reports import ReportDay, ReportMonth
from appliance.web.services import ServiceError, contacts, conversations, live, reports
from tests.helpers import csrf_token, login

BERLIN = zone({"timezone": "Europe/Berlin"})
D1, D2, D3 = dt.date(2031, 6, 10), dt.date(2031, 6, 11), dt.date(2031, 6, 12)  # CEST, UTC+2


def at(clock, d, h, mi, s=0):
    clock.set(dt.datetime(2031, 6, d, h, mi, s, tzinfo=dt.UTC))


def start(world, key, text):
    tenant = world.tenants[key]
    contact = contacts.create_contact(tenant, name=f"Customer of {key}")
    return conversations.start_conversation(world.objects[key]["channel"], tenant, contact, text)


@pytest.fixture
def fixture(world, clock, app):
    """Four conversations over two local days in A (account) and its sub-accounts A1, A2."""
    app.extensions["appliance_instance"].settings["timezone"] = "Europe/Berlin"
    agent1, agent2 = world.users[("A1", "agent")], world.users[("A1", "supervisor")]
    team = Team.create(tenant=world.tenants["A1"], name="Billing")
    at(clock, 10, 8, 0)  # 10:00 local on D1
    c1 = start(world, "A1", "my invoice")
    conversations.assign(c1, agent1.id, team.id, set_team=True)
    at(clock, 10, 8, 1, 30)
    conversations.add_message(c1, "out", "looking", author=agent1.id)  # first response: 90 s
    conversations.add_message(c1, "note", "notes are not counted", author=agent1.id)
    at(clock, 10, 9, 0)
    conversations.set_status(c1, "resolved")  # resolution: 3600 s
    at(clock, 10, 21, 50)  # 23:50 local, still D1
    c2 = start(world, "A1", "late question")
    conversations.assign(c2, agent2.id)
    at(clock, 10, 22, 20)  # 00:20 local: D2, though the UTC date is still the 10th
    conversations.add_message(c2, "out", "good night", author=agent2.id)  # first response: 1800 s
    at(clock, 11, 7, 0)
    c3 = start(world, "A2", "hello")
    agent_a2 = world.users[("A2", "agent")]
    conversations.assign(c3, agent_a2.id)
    at(clock, 11, 7, 0, 30)
    conversations.add_message(c3, "out", "hi", author=agent_a2.id)  # first response: 30 s
    at(clock, 11, 7, 10)
    conversations.set_status(c3, "resolved")  # resolution: 600 s
    at(clock, 11, 10, 0)
    c4 = start(world, "A", "to the head office")
    conversations.assign(c4, None)
    for day in (D1, D2):
        reports.record_day(day, BERLIN)
    return {"agent1": agent1, "agent2": agent2, "team": team, "c": (c1, c2, c3, c4)}


def pick(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def counts(row):
    return (row["opened"], row["resolved"], row["messages_in"], row["messages_out"], row["first_responses"])


def test_figures_match_the_hand_count(world, fixture):
    report = reports.build(world.tenants["A"], D1, D3)
    # opened, resolved, in, out, first responses
    assert counts(report["totals"]) == (4, 2, 4, 3, 3)
    # 30, 90, 1800 s: median inside [60, 120) -> 90; p90 inside [1800, 3600) -> 1800 + 0.7 * 1800.
    assert (report["totals"]["first_response_median"], report["totals"]["first_response_p90"]) == (90, 3060)
    # 600, 3600 s: median at the top of [600, 900); p90 inside [3600, 7200) -> 3600 + 0.8 * 3600.
    assert (report["totals"]["resolution_median"], report["totals"]["resolution_p90"]) == (900, 6480)
    # The reply at 22:20 UTC on the 10th is on the 11th in Berlin.
    assert [(r["period"], *counts(r)) for r in report["series"]] == [
        ("2031-06-10", 2, 1, 2, 1, 1), ("2031-06-11", 2, 1, 2, 2, 2)]
    weekly = reports.build(world.tenants["A"], D1, D3, grain="week")
    assert [(r["period"], r["opened"]) for r in weekly["series"]] == [("2031-06-09", 4)]  # Monday

    # Whole months are read from the monthly sums, the days around them from the day rows: same figures.
    for first, end, grain in ((dt.date(2031, 6, 1), dt.date(2031, 7, 1), "month"),
                              (dt.date(2031, 5, 20), dt.date(2031, 7, 3), "month"),
                              (dt.date(2031, 5, 20), dt.date(2031, 7, 3), "day")):
        wide = reports.build(world.tenants["A"], first, end, grain=grain)
        assert [wide[t] for t in ("totals", "channels", "teams", "agents")] == [
            report[t] for t in ("totals", "channels", "teams", "agents")]
    assert [(r["period"], r["opened"]) for r in wide["series"] if r["opened"]] == [("2031-06-10", 2), ("2031-06-11", 2)]
    june = ReportMonth.select().where(ReportMonth.day == dt.date(2031, 6, 1), ReportMonth.dimension == "all")
    assert june.count() == 3

    only_a1 = reports.build(world.tenants["A"], D1, D3, subaccount_id=world.tenants["A1"].id)
    assert counts(only_a1["totals"]) == (2, 1, 2, 2, 2)
    assert (only_a1["totals"]["first_response_median"], only_a1["totals"]["first_response_p90"]) == (120, 3240)
    agents = {r["name"]: counts(r) for r in only_a1["agents"]}
    assert agents == {fixture["agent1"].name: (1, 1, 1, 1, 1), fixture["agent2"].name: (1, 0, 1, 1, 1)}
    assert {r["name"]: counts(r) for r in only_a1["teams"]} == {"Billing": (1, 1, 1, 1, 1), "No team": (1, 0, 1, 1, 1)}
    assert [(r["name"], r["opened"]) for r in only_a1["channels"]] == [("chat A1", 2)]
    # A2 alone leaves A1 out; A1's own report is the same as A's filtered to A1.
    only_a2 = reports.build(world.tenants["A"], D1, D3, subaccount_id=world.tenants["A2"].id)
    assert counts(only_a2["totals"]) == (1, 1, 1, 1, 1)
    assert counts(reports.build(world.tenants["A1"], D1, D3)["totals"]) == (2, 1, 2, 2, 2)
    with pytest.raises(ServiceError, match="subaccount"):
        reports.build(world.tenants["A"], D1, D3, subaccount_id=world.tenants["B1"].id)
    with pytest.raises(ServiceError, match="subaccount"):
        reports.build(world.tenants["A1"], D1, D3, subaccount_id=world.tenants["A"].id)


def test_recomputing_a_day_is_idempotent_and_follows_reopening(world, fixture, clock, app):
    before = sorted((r.tenant_id, r.dimension, r.key, r.opened, r.messages_out) for r in
                    ReportDay.select().where(ReportDay.day == D2))
    assert reports.record_day(D2, BERLIN) == len(before)
    assert sorted((r.tenant_id, r.dimension, r.key, r.opened, r.messages_out) for r in
                  ReportDay.select().where(ReportDay.day == D2)) == before
    c1, c3 = fixture["c"][0], fixture["c"][2]
    at(clock, 11, 12, 0)
    conversations.set_status(c1, "resolved")  # already resolved: keeps its resolution on the 10th
    conversations.ingest_inbound(c3.channel, body="one more thing", conversation=c3)  # reopens it
    reports.record_day(D2, BERLIN)
    totals = reports.build(world.tenants["A2"], D1, D3)["totals"]
    assert (totals["resolved"], totals["messages_in"], totals["resolution_median"]) == (0, 2, None)
    assert [r["resolved"] for r in reports.build(world.tenants["A1"], D1, D3)["series"]] == [1, 0]
    # The worker job computes the days not yet final and leaves fresh ones alone.
    at(clock, 12, 9, 0)
    reports.reports_job(app)
    assert ReportDay.select().where(ReportDay.day == D3).count() == 0  # nothing happened on the 12th
    assert ReportDay.select().where(ReportDay.day == D2, ReportDay.dimension == "all").count() == 3


def test_pages_csv_and_api(world, fixture, client):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    query = f"from={D1}&to={D3}&subaccount={a1.id}"
    assert login(client, world.email("A", "agent")).status_code == 302
    assert client.get(f"/t/{a.id}/reports").status_code == 403
    assert client.get(f"/t/{a.id}/supervisor").status_code == 403
    client.post("/logout", data={"csrf_token": csrf_token(client, f"/t/{a.id}/inbox")})
    assert login(client, world.email("A", "supervisor")).status_code == 302
    page = client.get(f"/t/{a.id}/reports?{query}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert html.count("<svg") == 2 and "<script" not in html.split("</head>", 1)[1]
    assert f'<option value="{a1.id}" selected>' in html and ">Reports</a>" in html
    assert "<td>2031-06-11</td><td>0</td><td>0</td><td>0</td><td>1</td>" in html and "<td>45 min</td>" in html

    csv = client.get(f"/t/{a.id}/reports.csv?{query}&table=agents")
    assert csv.headers["Content-Type"].startswith("text/csv")
    lines = csv.get_data(as_text=True).split("\r\n")
    assert lines[0] == ("name,opened,resolved,messages_in,messages_out,first_responses,first_response_median,"
                        "first_response_p90,resolution_median,resolution_p90")
    # One value in a bucket sits at its middle (median) and 90 % up (p90): 90 s in [60, 120),
    # 3600 s in [3600, 7200), 1800 s in [1800, 3600).
    assert "agent A1,1,1,1,1,1,90,114,5400,6840" in lines
    assert "supervisor A1,1,0,1,1,1,2700,3420,," in lines
    series = client.get(f"/t/{a.id}/reports.csv?from={D1}&to={D3}&table=series").get_data(as_text=True)
    # The 11th: first responses 30 s and 1800 s (median at the top of [30, 60)), resolution 600 s.
    assert series.split("\r\n")[1:3] == ["2031-06-10,2,1,2,1,1,90,114,5400,6840",
                                         "2031-06-11,2,1,2,2,2,60,3240,750,870"]
    assert client.get(f"/t/{a.id}/reports.csv?{query}&table=nope").status_code == 422
    assert client.get(f"/t/{a.id}/reports?from={D3}&to={D1}").status_code == 422

    api = client.get(f"/api/v1/tenants/{a.id}/reports?{query}", headers=world.headers("A", "supervisor"))
    assert api.status_code == 200
    assert api.get_json() == reports.build(a, D1, D3, subaccount_id=a1.id)
    api_csv = client.get(f"/api/v1/tenants/{a.id}/reports?{query}&format=csv&table=teams",
                         headers=world.headers("A", "admin"))
    assert api_csv.get_data(as_text=True).split("\r\n")[1] == "Billing,1,1,1,1,1,90,114,5400,6840"
    assert client.get(f"/api/v1/tenants/{a.id}/reports", headers=world.headers("A", "agent")).status_code == 403
    assert client.get(f"/api/v1/tenants/{a.id}/reports", headers=world.headers("B", "admin")).status_code == 404


def test_supervisor_sees_queues_and_reassigns(world, fixture, client, clock):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    agent1, agent2 = fixture["agent1"], fixture["agent2"]
    c4 = fixture["c"][3]
    at(clock, 11, 11, 0)
    live.seen(agent1.id, active=True)
    assert login(client, world.email("A", "supervisor")).status_code == 302
    api = client.get(f"/api/v1/tenants/{a.id}/supervisor", headers=world.headers("A", "supervisor")).get_json()
    # Open: c2 (A1, agent2) and c4 (A, unassigned since 10:00 UTC) plus the world's own, assigned ones.
    no_team = pick(api["teams"], id=None)[0]
    assert (no_team["unassigned"], no_team["longest_wait_seconds"]) == (1, 3600)
    chat_a = pick(api["channels"], name="chat A")[0]
    assert (chat_a["waiting"], chat_a["unassigned"], chat_a["longest_wait_seconds"]) == (2, 1, 3600)
    people = {p["id"]: p for p in api["agents"]}
    # agent1 holds the world's own A1 conversation (round-robin routes agents, not the admin).
    assert (people[agent1.id]["status"], people[agent1.id]["open"]) == ("online", 1)
    assert (people[agent2.id]["status"], people[agent2.id]["open"]) == ("offline", 1)
    assert world.users[("B", "agent")].id not in people

    page = client.get(f"/t/{a.id}/supervisor")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="queues-teams"' in html and "online" in html
    row = html.split(f'id="assignee-{c4.id}"', 1)[1].split("</select>", 1)[0]  # only who may take it
    assert f'value="{world.users[("A", "agent")].id}"' in row and f'value="{agent1.id}"' not in row
    token = csrf_token(client, f"/t/{a.id}/supervisor")
    assert client.post(f"/t/{a.id}/supervisor/assign",
                       data={"conversation": str(c4.id), "assignee": str(agent1.id)}).status_code == 400  # no CSRF
    a_agent = world.users[("A", "agent")]
    done = client.post(f"/t/{a.id}/supervisor/assign",
                       data={"csrf_token": token, "conversation": str(c4.id), "assignee": str(a_agent.id)})
    assert done.status_code == 302
    assert Conversation.get_by_id(c4.id).assignee_id == a_agent.id
    event = AuditEvent.select().where(AuditEvent.action == "conversation.assign").order_by(AuditEvent.id.desc()).get()
    assert event.target == f"conversation:{c4.id}" and event.actor_id == world.users[("A", "supervisor")].id
    # An A1 agent cannot take A's conversation; a B1 conversation is not reachable from A.
    refused = client.post(f"/t/{a.id}/supervisor/assign", data={
        "csrf_token": token, "conversation": str(c4.id), "assignee": str(world.users[("A1", "agent")].id)})
    assert refused.status_code == 422 and Conversation.get_by_id(c4.id).assignee_id == a_agent.id
    other = world.objects["B1"]["conversation"]
    assert client.post(f"/t/{a.id}/supervisor/assign", data={
        "csrf_token": token, "conversation": str(other.id), "assignee": "none"}).status_code == 404
    # A sub-account's supervisor sees only its own queues.
    sub = client.get(f"/api/v1/tenants/{a1.id}/supervisor", headers=world.headers("A1", "supervisor")).get_json()
    assert pick(sub["channels"], name="chat A") == []
