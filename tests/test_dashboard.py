"""The provider's dashboard against a hand-counted world (tests/helpers.build_world: P > A >
(A1, A2); P > B > B1, three members each, one conversation in every tenant), on the page and
in the API, and who may see it."""

from __future__ import annotations

from appliance.core.calendar import today, zone
from appliance.web.channels.config import record_error
from appliance.web.models.channels import FAILED, OutboxMessage
from appliance.web.services import conversations, reports
from tests.helpers import login


def _count_today(app):
    tz = zone(app.extensions["appliance_instance"].settings)
    reports.record_day(today(tz), tz)


def _fail_a_reply(world):
    conv = world.objects["B1"]["conversation"]
    message = conversations.add_message(conv, "out", "will not arrive", author=world.users[("B1", "agent")].id)
    OutboxMessage.create(message=message, channel=conv.channel_id, tenant=conv.tenant_id, conversation_id=conv.id,
                         state=FAILED, idempotency_key="k-failed", last_error="gave up")


def test_provider_admin_lands_on_the_dashboard_with_the_figures(app, client, world):
    with app.app_context():
        record_error(world.objects["A1"]["channel"], "401 from the service: token revoked")
        _fail_a_reply(world)
        _count_today(app)
    login(client, world.email("P", "admin"))
    landing = client.get("/")
    assert landing.status_code == 302 and landing.headers["Location"].endswith("/dashboard")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Dashboard" in page and '<svg' in page
    # 2 accounts, 3 sub-accounts; seats: 5 tenants below the provider x 3 members.
    assert '<dd id="tile-tenants">2 <span class="small muted">accounts</span> · 3' in page
    assert '<dd id="tile-seats">15 / ' in page
    assert '<dd id="tile-today">6</dd>' in page  # one conversation per tenant, the provider's included
    assert "token revoked" in page and "chat A1" in page
    assert '<dd id="tile-channels">2 <span' in page  # A1's error, B1's failed reply
    assert "no worker has run yet" in page


def test_dashboard_api_gives_the_same_figures_to_provider_admins_only(app, client, world):
    with app.app_context():
        record_error(world.objects["A1"]["channel"], "timeout")
        _fail_a_reply(world)
        _count_today(app)
    answer = client.get("/api/v1/dashboard", headers=world.headers("P", "admin"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    data = answer.get_json()
    assert data["tenants"] == {"accounts": 2, "subaccounts": 3, "inactive": 0}
    assert data["licence"]["seats_used"] == 15 and data["licence"]["tenants_used"] == 5
    assert data["conversations"]["today_opened"] == 6
    assert len(data["conversations"]["series"]) == 14
    local_today = today(zone(app.extensions["appliance_instance"].settings))
    assert data["conversations"]["series"][-1]["day"] == local_today.isoformat()
    failing = {row["channel"]: row for row in data["channels"]["failing"]}
    assert failing["chat A1"]["error"] == "timeout" and failing["chat B1"]["failed_replies"] == 1
    assert data["channels"]["failed_replies_24h"] == 1
    assert data["worker"]["level"] == "warn" and data["sync"]["level"] == "ok"
    for key, role in (("P", "supervisor"), ("A", "admin")):
        assert client.get("/api/v1/dashboard", headers=world.headers(key, role)).status_code == 403


def test_others_keep_the_inbox_and_cannot_open_the_dashboard(client, world):
    login(client, world.email("A", "admin"))
    assert f"/t/{world.tenants['A'].id}/inbox" in client.get("/").headers["Location"]
    assert client.get("/dashboard").status_code in (403, 404)


def test_a_failed_reply_older_than_a_day_is_not_a_problem_any_more(app, client, world, clock):
    with app.app_context():
        _fail_a_reply(world)
        clock.advance(hours=25)
    data = client.get("/api/v1/dashboard", headers=world.headers("P", "admin")).get_json()
    assert data["channels"]["failed_replies_24h"] == 0 and data["channels"]["failing"] == []


def test_sync_page_shows_the_report_as_a_table_with_the_json_folded(app, client, world, clock):
    clock.advance(days=1)  # the world's day is yesterday now: the day the next report covers
    login(client, world.email("P", "admin"))
    page = client.get("/admin/sync/").get_data(as_text=True)
    table = page[page.index('id="report-usage"'):page.index("</table>", page.index('id="report-usage"'))]
    a = world.tenants["A"].id
    assert f"<td>#{a}</td>" in table  # names are not shared unless the installer says so
    assert table.count("<tr>") == 1 + 6  # the header and one row per tenant (each had a conversation)
    raw = page.index('<details class="raw">')
    assert page.index("appliance-sync-batch") > raw  # the exact JSON is still there, folded below the table


def test_licence_page_puts_the_state_and_key_figures_first(client, world):
    login(client, world.email("P", "admin"))
    page = client.get("/licence").get_data(as_text=True)
    assert 'class="badge badge-warn" id="licence-badge">Evaluation mode' in page
    glance = page.index('id="licence-glance"')
    assert glance < page.index("Programs per tenant") < page.index("Licence history")
    assert "<dd>5 / " in page[glance:] and "<dd>15 / " in page[glance:]  # tenants and seats used / allowed
    assert page.count('<details class="section"') == 3  # install form, programs per tenant, history: folded
