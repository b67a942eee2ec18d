"""The audit chain is keyed and anchored outside the database: shortening or rewriting it
shows; logins, failed logins, admin token use, exports and key operations are recorded;
admins read it through a viewer with filters and CSV export."""

from __future__ import annotations

import csv
import hashlib
import io
import json

import pytest

from appliance.web.models.audit import GENESIS, LEGACY, AuditEvent, head, record, trail, verify
from appliance.web.system_status import _audit
from tests.helpers import login


@pytest.fixture
def events(app):
    for i in range(6):
        record("test.event", seq=i)
    assert verify().intact
    return list(AuditEvent.select().order_by(AuditEvent.id))


def test_deleting_the_newest_entries_is_truncation(events):
    AuditEvent.delete().where(AuditEvent.id >= events[-2].id).execute()
    report = verify()
    assert report.broken == []  # what is left still links up...
    assert not report.intact  # ...but the anchor outside the database knows it was longer
    assert "Truncated" in " ".join(report.problems)
    assert _audit().level == "error"


def test_deleting_every_entry_is_truncation(events):
    AuditEvent.delete().execute()
    report = verify()
    assert not report.intact and "Truncated" in " ".join(report.problems)


def test_rewriting_with_recomputed_plain_hashes_is_detected(events):
    # What an attacker with the database alone can do: edit, then recompute every hash.
    prev = GENESIS
    for event in AuditEvent.select().order_by(AuditEvent.id):
        event.action = "forged" if event.id == events[1].id else event.action
        event.prev_hash = prev
        event.hash = hashlib.sha256(event.material()).hexdigest()
        event.save()
        prev = event.hash
    report = verify()
    assert report.broken  # no key, no valid MAC
    # Relabelling the rows as the old unkeyed scheme does not help: the anchor's head differs.
    AuditEvent.update(scheme=LEGACY).execute()
    prev = GENESIS
    for event in AuditEvent.select().order_by(AuditEvent.id):
        event.prev_hash = prev
        event.hash = event.compute_hash()
        event.save()
        prev = event.hash
    report = verify()
    assert not report.intact and "Rewritten" in " ".join(report.problems)


def test_the_anchor_cannot_be_lowered_or_deleted(events):
    bound = trail()
    data = json.loads(bound.anchor_path.read_text())
    assert data["last_id"] == events[-1].id and data["count"] == len(events)
    data["count"], data["last_id"] = 2, events[1].id
    bound.anchor_path.write_text(json.dumps(data))  # lowered, with the old MAC
    assert not verify().intact
    bound.anchor_path.unlink()
    report = verify()
    assert not report.intact and "missing" in " ".join(report.problems)


def test_the_anchor_never_moves_over_a_break(events):
    AuditEvent.delete().where(AuditEvent.id == events[-1].id).execute()
    record("test.after_truncation")  # a new event after the damage must not bless it
    assert not verify().intact
    assert head()["last_id"] == events[-1].id


def test_events_before_the_key_still_verify_and_are_followed_by_keyed_ones(app):
    old = AuditEvent(at=AuditEvent.at.default(), action="old.release", details="{}", prev_hash=GENESIS,
                     scheme=LEGACY)
    old.hash = old.compute_hash()
    old.save()
    record("test.new")
    report = verify()
    assert report.intact, report.problems
    assert [e.scheme for e in AuditEvent.select().order_by(AuditEvent.id)] == [LEGACY, "hmac1"]


def test_anchor_file_is_private_and_head_is_exposed(events):
    mode = trail().anchor_path.stat().st_mode & 0o777
    assert mode == 0o600
    assert head() == {"last_id": events[-1].id, "last_hash": events[-1].hash, "count": len(events)}


def _actions():
    return [e.action for e in AuditEvent.select().order_by(AuditEvent.id)]


def test_logins_and_failed_logins_are_recorded_without_the_address(app, world):
    client = app.test_client()
    assert login(client, world.email("A", "agent"), "wrong-password-x").status_code == 401
    assert login(client, "nobody@nowhere.test", "wrong-password-x").status_code == 401
    assert login(client, world.email("A", "agent")).status_code == 302
    failed = list(AuditEvent.select().where(AuditEvent.action == "auth.login_failed").order_by(AuditEvent.id))
    assert [e.target for e in failed] == [f"user:{world.users[('A', 'agent')].id}", None]
    ok = AuditEvent.get(AuditEvent.action == "auth.login")
    assert ok.actor_id == world.users[("A", "agent")].id
    text = " ".join(f"{e.target} {e.details}" for e in AuditEvent.select())
    assert "nobody@" not in text and world.email("A", "agent") not in text
    assert verify().intact


def test_admin_token_use_is_recorded(client, world):
    before = AuditEvent.select().where(AuditEvent.action == "token.use").count()
    assert client.get(f"/api/v1/tenants/{world.tenants['A'].id}/contacts",
                      headers=world.headers("A", "agent")).status_code == 200
    assert AuditEvent.select().where(AuditEvent.action == "token.use").count() == before
    assert client.get(f"/api/v1/tenants/{world.tenants['A'].id}/contacts",
                      headers=world.headers("A", "admin")).status_code == 200
    use = AuditEvent.select().where(AuditEvent.action == "token.use").order_by(AuditEvent.id.desc()).first()
    assert use.actor_id == world.users[("A", "admin")].id and use.tenant_id == world.tenants["A"].id
    # Once a minute per token, like last_used_at: not an event per request.
    uses = AuditEvent.select().where(AuditEvent.action == "token.use").count()
    client.get(f"/api/v1/tenants/{world.tenants['A'].id}", headers=world.headers("A", "admin"))
    assert AuditEvent.select().where(AuditEvent.action == "token.use").count() == uses


def test_viewer_filters_scopes_to_the_subtree_and_exports_csv(app, world):
    record("test.in_a1", tenant_id=world.tenants["A1"].id, actor_id=7)
    record("test.in_b", tenant_id=world.tenants["B"].id, actor_id=7)
    record("test.installation_wide")
    client = app.test_client()
    assert login(client, world.email("A", "admin")).status_code == 302
    a = world.tenants["A"].id
    page = client.get(f"/t/{a}/audit?action=test.")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "test.in_a1" in text and "test.in_b" not in text and "test.installation_wide" not in text
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get(f"/t/{a}/audit?since=yesterday").status_code == 400
    exported = client.get(f"/t/{a}/audit/export.csv?action=test.&actor=7")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["action"] for r in rows] == ["test.in_a1"]
    export_event = AuditEvent.select().where(AuditEvent.action == "audit.export").get()
    assert export_event.actor_id == world.users[("A", "admin")].id and json.loads(export_event.details)["rows"] == 1
    # Not for supervisors.
    other = app.test_client()
    assert login(other, world.email("A", "supervisor")).status_code == 302
    assert other.get(f"/t/{a}/audit").status_code == 403
    # The provider's admins see installation-wide events and the chain's state.
    provider = app.test_client()
    assert login(provider, world.email("P", "admin")).status_code == 302
    text = provider.get(f"/t/{world.tenants['P'].id}/audit?action=test.").get_data(as_text=True)
    assert "test.installation_wide" in text and "test.in_b" in text and "Chain intact" in text


def test_csv_cells_cannot_become_formulas(app, world):
    record("=HYPERLINK(1)", tenant_id=world.tenants["A"].id)
    client = app.test_client()
    assert login(client, world.email("A", "admin")).status_code == 302
    body = client.get(f"/t/{world.tenants['A'].id}/audit/export.csv").get_data(as_text=True)
    assert "'=HYPERLINK(1)" in body


def test_key_operations_are_recorded(app, instance, runner, monkeypatch):
    from appliance.cli import main

    monkeypatch.setenv("APPLIANCE_RECOVERY_PASSPHRASE", "a long recovery passphrase")
    result = runner.invoke(main, ["--home", str(instance.home), "keys", "export-recovery"])
    assert result.exit_code == 0, result.output
    assert "keys.export_recovery" in _actions()
    assert verify().intact


def test_cli_verify_and_head(app, instance, runner, events):
    from appliance.cli import main

    ok = runner.invoke(main, ["--home", str(instance.home), "audit", "verify"])
    assert ok.exit_code == 0 and "intact" in ok.output
    shown = runner.invoke(main, ["--home", str(instance.home), "audit", "head"])
    assert json.loads(shown.output)["last_id"] == AuditEvent.select().order_by(AuditEvent.id.desc()).first().id
    AuditEvent.delete().where(AuditEvent.id == events[-1].id).execute()
    AuditEvent.delete().where(AuditEvent.id > events[-1].id).execute()
    broken = runner.invoke(main, ["--home", str(instance.home), "audit", "verify"])
    assert broken.exit_code == 1 and "Truncated" in broken.output
