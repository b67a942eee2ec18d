"""The system page and ``appliance status`` show the installation's state at a glance."""

from __future__ import annotations

from appliance.cli import main
from tests.helpers import login


def test_system_page_for_provider_admins_only(app, client, world):
    assert login(client, world.email("P", "admin")).status_code == 302
    page = client.get("/admin/system/").get_data(as_text=True)
    for part in ("Database", "Background worker", "Licence", "Encryption keys", "Sync to vendor", "Audit trail"):
        assert part in page
    assert "no worker has run yet" in page
    other = app.test_client()
    login(other, world.email("A", "admin"))
    assert other.get("/admin/system/").status_code == 404


def test_worker_round_and_tampered_audit_show_up(app, client, world):
    from appliance.web.jobs import run_round
    from appliance.web.models.audit import AuditEvent, record

    run_round(app)
    record("test.event", actor_id=1, note="x")
    record("test.event", actor_id=1, note="y")
    first = AuditEvent.select().order_by(AuditEvent.id).first()
    AuditEvent.update(action="forged").where(AuditEvent.id == first.id).execute()
    login(client, world.email("P", "admin"))
    page = client.get("/admin/system/").get_data(as_text=True)
    assert "no worker has run yet" not in page
    assert "do not chain" in page and f"id {first.id}" in page


def test_status_command(app, instance, runner):
    result = runner.invoke(main, ["--home", str(instance.home), "status"])
    assert result.exit_code == 0, result.output  # warnings only: no worker yet, evaluation licence
    assert "Database" in result.output and "schema version" in result.output
    assert "WARN   Background worker" in result.output


def test_status_command_fails_when_a_check_is_an_error(app, instance, runner):
    from appliance.web.models.audit import AuditEvent, record

    with app.app_context():
        record("test.event", actor_id=1, note="x")
        AuditEvent.update(action="forged").where(AuditEvent.id == AuditEvent.select().first().id).execute()
    result = runner.invoke(main, ["--home", str(instance.home), "status"])
    assert result.exit_code == 1, result.output
    assert "ERROR  Audit trail" in result.output and "do not chain" in result.output
