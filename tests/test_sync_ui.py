"""The admin page and the ``appliance sync`` commands."""

from __future__ import annotations

import json

import pytest

from tests.helpers import csrf_token, login


@pytest.fixture
def instance_of_app(app):
    return app.extensions["appliance_instance"]


def audit_actions():
    from appliance.web.models.audit import AuditEvent

    events = AuditEvent.select().where(AuditEvent.action.startswith("sync.")).order_by(AuditEvent.id)
    return [(e.action, e.actor_id, json.loads(e.details).get("via")) for e in events]


def test_provider_admin_sees_state_preview_and_turns_sync_on_and_off(app, client, world, instance_of_app):
    from appliance.web.sync import service

    admin = world.users[("P", "admin")]
    login(client, admin.email)
    page = client.get("/admin/sync/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sync is off" in html and "Turn sync on" in html
    assert "appliance-sync-batch" in html and "&#34;tenants&#34;" in html  # the exact JSON, escaped
    token = csrf_token(client, "/admin/sync/")
    assert client.post("/admin/sync/toggle", data={"enabled": "1"}).status_code == 400  # no CSRF token
    answer = client.post("/admin/sync/toggle", data={"enabled": "1", "csrf_token": token})
    assert answer.status_code == 303
    with app.app_context():
        assert service.is_enabled(instance_of_app)
    html = client.get("/admin/sync/").get_data(as_text=True)
    assert "Sync is on" in html and "Turn sync off" in html
    client.post("/admin/sync/toggle", data={"enabled": "0", "csrf_token": token})
    with app.app_context():
        assert not service.is_enabled(instance_of_app)
        assert audit_actions() == [("sync.enabled", admin.id, "ui"), ("sync.disabled", admin.id, "ui")]


@pytest.mark.parametrize("who", [("A", "admin"), ("P", "supervisor"), ("P", "agent")])
def test_only_provider_admins_reach_the_page(client, world, who):
    login(client, world.users[who].email)
    expected = 404 if who[0] != "P" else 403  # tenants below the provider do not even see it
    assert client.get("/admin/sync/").status_code == expected
    token = csrf_token(client, "/login")
    answer = client.post("/admin/sync/toggle", data={"enabled": "1", "csrf_token": token})
    assert answer.status_code == expected


def test_anonymous_is_sent_to_login(client, world):
    answer = client.get("/admin/sync/")
    assert answer.status_code == 302 and "/login" in answer.headers["Location"]


def test_locked_off_by_the_installer(app, client, world, instance_of_app):
    from appliance.web.sync import service

    instance_of_app.settings["sync"]["locked_off"] = True
    login(client, world.users[("P", "admin")].email)
    html = client.get("/admin/sync/").get_data(as_text=True)
    assert "turned off by the installer" in html
    assert "disabled>" in html.replace("\n", "").replace("  ", "")
    token = csrf_token(client, "/admin/sync/")
    client.post("/admin/sync/toggle", data={"enabled": "1", "csrf_token": token})
    html = client.get("/admin/sync/").get_data(as_text=True)
    assert "cannot be turned on here" in html
    with app.app_context():
        assert not service.is_enabled(instance_of_app)
        assert audit_actions() == []


def test_page_shows_the_version_the_vendor_announced(app, client, world):
    from appliance.web.sync import service

    with app.app_context():
        service.set_state(service.LATEST_VERSION, "3.2.1")
    login(client, world.users[("P", "admin")].email)
    assert "3.2.1" in client.get("/admin/sync/").get_data(as_text=True)


def test_cli_status_identity_switch_and_export(app, world, instance_of_app, tmp_path, runner):
    from appliance.cli import main
    from appliance.core.identity import load_public_key
    from appliance.core.sync.report import parse_export

    home = ["--home", str(instance_of_app.home)]
    status = json.loads(runner.invoke(main, [*home, "sync", "status", "--json"]).output)
    assert status["enabled"] is False and status["locked_off"] is False
    assert status["outbox"] == {"pending": 0, "sending": 0, "sent": 0, "failed": 0}

    pub = tmp_path / "site.pub"
    shown = runner.invoke(main, [*home, "sync", "identity", "--public-key-out", str(pub)])
    assert status["installation_id"] in shown.output
    load_public_key(pub.read_text())

    assert runner.invoke(main, [*home, "sync", "enable"]).output.strip() == "sync turned on"
    assert runner.invoke(main, [*home, "sync", "enable"]).output.strip() == "sync was already on"
    assert json.loads(runner.invoke(main, [*home, "sync", "status", "--json"]).output)["enabled"] is True
    assert runner.invoke(main, [*home, "sync", "disable"]).exit_code == 0

    out = tmp_path / "range.json"
    made = runner.invoke(main, [*home, "sync", "export", str(out), "--from", "2026-11-01", "--to", "2026-11-03"])
    assert made.exit_code == 0, made.output
    report = parse_export(out.read_text())["report"]
    assert [d["date"] for d in report["days"]] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    again = runner.invoke(main, [*home, "sync", "export", str(out), "--day", "2026-11-01"])
    assert again.exit_code != 0 and "--force" in again.output
    with app.app_context():
        from appliance.web.db import database_proxy

        database_proxy.connect(reuse_if_open=True)
        assert [(a, v) for a, _, v in audit_actions()] == [("sync.enabled", "cli"), ("sync.enabled", "cli"),
                                                          ("sync.disabled", "cli")]


def test_admin_menu_links_the_page_for_provider_admins_only(client, world):
    link = 'href="/admin/sync/"'
    login(client, world.users[("P", "admin")].email)
    assert link in client.get(f"/t/{world.tenants['A'].id}/inbox").get_data(as_text=True)
    other = client.application.test_client()
    login(other, world.users[("A", "admin")].email)
    page = other.get(f"/t/{world.tenants['A'].id}/inbox")
    assert page.status_code == 200 and link not in page.get_data(as_text=True)
