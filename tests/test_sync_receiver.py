"""The vendor's receiver over real HTTP: what it stores, what it refuses and why."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
import requests

from appliance.core.identity import ensure_identity, load_identity
from appliance.core.sync.report import (
    BATCH_FORMAT,
    ENVELOPE_FORMAT,
    SIGNING_CONTEXT,
    build_report,
    canonical_json,
    export_text,
    sign_report,
)
from tests.sync_support import Receiver

TOKEN = "vendor-admin-token-0123456789"
KEY = {"Idempotency-Key": "k" * 10}


class Home:
    def __init__(self, path):
        self.home = path


def make_identity(path):
    ensure_identity(Home(path))
    return load_identity(Home(path))


@pytest.fixture
def ident(tmp_path):
    return make_identity(tmp_path / "site-a")


@pytest.fixture
def stranger(tmp_path):
    return make_identity(tmp_path / "site-b")


@pytest.fixture
def receiver(tmp_path, ident):
    r = Receiver(tmp_path / "vendor.db", admin_token=TOKEN)
    r.register(ident, label="Site A")
    yield r
    r.stop()


def report_for(identity, day="2026-11-24", messages=3, last_day=None, generated_at=None, audit_entries=None):
    days = [{"date": day, "tenants": [{"tenant": 2, "conversations": 1, "messages": messages,
                                       "active_operators": 1, "seats_used": 2, "programs": ["webchat"]}]}]
    if last_day:
        days.append({"date": last_day, "tenants": []})
    return build_report(installation_id=identity.installation_id, version="0.1.0", profile="minimal",
                        days=days, generated_at=generated_at, audit_entries=audit_entries)


def envelope_for(identity, **kwargs):
    return sign_report(report_for(identity, **kwargs), identity)


def post_batch(receiver, envelopes, key="batch-key-0001", header=True):
    body = canonical_json({"format": BATCH_FORMAT, "v": 1, "batch_id": key, "reports": envelopes})
    headers = {"Content-Type": "application/json"}
    if header:
        headers["Idempotency-Key"] = key
    return requests.post(receiver.url + "/api/v1/reports", data=body, headers=headers, timeout=10)


def stored_count(receiver):
    from appliance.vendor_tools.receiver.models import Report

    return receiver.query(lambda: Report.select().count())


def test_each_bad_report_is_refused_with_its_reason_and_the_good_one_stored(receiver, ident, stranger):
    good = envelope_for(ident, day="2026-11-20")
    tampered = envelope_for(ident, day="2026-11-21")
    tampered["report"]["days"][0]["tenants"][0]["messages"] = 3000
    unsigned = envelope_for(ident, day="2026-11-22")
    del unsigned["signature"]
    unregistered = envelope_for(stranger, day="2026-11-23")
    forged = envelope_for(ident, day="2026-11-24")  # claims to be site A, signed by B
    forged["signature"] = base64.b64encode(
        stranger.sign(SIGNING_CONTEXT + canonical_json(forged["report"]))
    ).decode()
    free_text = report_for(ident, day="2026-11-25")
    free_text["days"][0]["tenants"][0]["contact"] = "Ivan Petrov +7 916 555 01 99"
    free_text_env = {"format": ENVELOPE_FORMAT, "v": 1, "alg": "Ed25519", "report": free_text,
                     "signature": base64.b64encode(ident.sign(SIGNING_CONTEXT + canonical_json(free_text))).decode()}

    answer = post_batch(receiver, [good, tampered, unsigned, unregistered, forged, free_text_env])
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [(r["status"], r.get("code")) for r in results] == [
        ("stored", None),
        ("rejected", "bad_signature"),
        ("rejected", "unsigned"),
        ("rejected", "unregistered"),
        ("rejected", "bad_signature"),
        ("rejected", "invalid"),
    ]
    assert "does not match" in results[1]["reason"]
    assert "not signed" in results[2]["reason"]
    assert stranger.installation_id in results[3]["reason"] and "not registered" in results[3]["reason"]
    assert "contact" in results[5]["reason"] and "Ivan" not in results[5]["reason"]
    assert stored_count(receiver) == 1

    # The same batch again (a retry): re-checked, since "unregistered" may have changed
    # since; the same answers, nothing stored twice.
    again = post_batch(receiver, [good, tampered, unsigned, unregistered, forged, free_text_env])
    assert again.json()["replayed"] is False
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] + ["rejected"] * 5
    # The same report in another batch: recognised by its id; that batch retried: replayed.
    other = post_batch(receiver, [good, tampered], key="batch-key-0002")
    assert other.json()["results"][0] == {"report_id": good["report"]["report_id"], "status": "duplicate"}
    retried = post_batch(receiver, [good, tampered], key="batch-key-0002")
    assert retried.json()["replayed"] is True and retried.json()["results"] == other.json()["results"]
    assert stored_count(receiver) == 1


@pytest.mark.parametrize(
    "body, headers, status, reason",
    [
        (b"not json", KEY, 400, "not valid JSON"),
        (b'{"format": "other", "v": 1, "reports": [1]}', KEY, 400, "appliance-sync-batch"),
        (b'{"format": "appliance-sync-batch", "v": 1, "reports": []}', KEY, 400, "no reports"),
        (b'{"format": "appliance-sync-batch", "v": 1, "reports": [{}]}', {}, 400, "Idempotency-Key"),
        (json.dumps({"format": "appliance-sync-batch", "v": 1, "reports": [{}] * 401}).encode(), KEY, 413, "at most"),
    ],
    ids=["not-json", "wrong-format", "empty", "no-key", "too-many"],
)
def test_unusable_batches_are_refused_as_a_whole(receiver, body, headers, status, reason):
    answer = requests.post(receiver.url + "/api/v1/reports", data=body, headers=headers, timeout=10)
    assert answer.status_code == status
    assert reason in answer.json()["reason"]


def test_export_files_are_checked_like_online_reports(receiver, ident, stranger):
    url = receiver.url + "/api/v1/exports"
    envelope = envelope_for(ident)
    ok = requests.post(url, files={"file": ("report.json", export_text(envelope))}, timeout=10)
    assert (ok.status_code, ok.json()["status"]) == (200, "stored")
    armored = requests.post(url, data=export_text(envelope, armor=True), timeout=10)
    assert (armored.status_code, armored.json()["status"]) == (200, "duplicate")

    tampered = export_text(envelope).replace('"messages": 3', '"messages": 1')
    unsigned = dict(envelope, signature="")
    cases = {
        "bad_signature": export_text(json.loads(tampered)),
        "unsigned": export_text(unsigned),
        "unregistered": export_text(envelope_for(stranger)),
        "malformed": "%PDF-1.4 not a report",
    }
    for code, text in cases.items():
        answer = requests.post(url, files={"file": ("f", text)}, timeout=10)
        assert answer.status_code == 422, code
        assert answer.json()["code"] == code
        assert answer.json()["reason"]

    page = requests.post(receiver.url + "/upload", files={"file": ("f", cases["bad_signature"])}, timeout=10)
    assert page.status_code == 422
    assert "Rejected (bad_signature)" in page.text and "does not match" in page.text
    assert stored_count(receiver) == 1


def test_admin_endpoints_need_the_token(receiver, stranger, ident):
    url = receiver.url + "/api/v1/installations"
    payload = {"installation_id": stranger.installation_id, "public_key": stranger.public_key_pem()}
    assert requests.post(url, json=payload, timeout=10).status_code == 401
    wrong = requests.post(url, json=payload, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(url, json=payload, headers=auth, timeout=10).status_code == 201
    assert requests.post(url, json=payload, headers=auth, timeout=10).status_code == 200
    hijack = {"installation_id": stranger.installation_id, "public_key": ident.public_key_pem()}
    refused = requests.post(url, json=hijack, headers=auth, timeout=10)
    assert refused.status_code == 400 and "another key" in refused.json()["reason"]

    post_batch(receiver, [envelope_for(ident, messages=42)])
    listing = requests.get(url, headers=auth, timeout=10).json()["installations"]
    site_a = next(i for i in listing if i["installation_id"] == ident.installation_id)
    summary = (site_a["label"], site_a["messages"], site_a["latest_day"], site_a["reports"])
    assert summary == ("Site A", 42, "2026-11-24", 1)
    html = requests.get(receiver.url + "/installations", auth=("vendor", TOKEN), timeout=10)
    assert html.status_code == 200 and ident.installation_id in html.text and "Site A" in html.text
    assert requests.get(receiver.url + "/installations", timeout=10).status_code == 401


def test_admin_endpoints_are_off_without_a_token(tmp_path, ident):
    r = Receiver(tmp_path / "v2.db")
    try:
        answer = requests.get(r.url + "/api/v1/installations", headers={"Authorization": "Bearer x"}, timeout=10)
        assert answer.status_code == 403 and "disabled" in answer.json()["error"]
    finally:
        r.stop()


def test_a_late_older_report_does_not_overwrite_fresher_counts(receiver, ident):
    from appliance.vendor_tools.receiver.models import DayUsage

    newer = sign_report(report_for(ident, messages=50, generated_at=dt.datetime(2026, 11, 25, 12)), ident)
    older = sign_report(
        report_for(ident, messages=10, last_day="2026-11-25", generated_at=dt.datetime(2026, 11, 25, 1)), ident
    )
    post_batch(receiver, [newer], key="batch-new-1")
    post_batch(receiver, [older], key="batch-old-1")
    usage = receiver.query(lambda: [(str(u.date), u.messages) for u in DayUsage.select().order_by(DayUsage.date)])
    assert usage == [("2026-11-24", 50)]
    assert stored_count(receiver) == 2  # both kept as received; the summary takes the fresher


def test_the_vendor_sees_an_audit_trail_that_shrank_between_reports(receiver, ident):
    def listed():
        answer = requests.get(receiver.url + "/api/v1/installations",
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        (site,) = answer.json()["installations"]
        return site["audit_entries"], site["audit_trail_shrank"]

    first = sign_report(report_for(ident, day="2026-11-24", audit_entries=120,
                                   generated_at=dt.datetime(2026, 11, 25, 1)), ident)
    growing = sign_report(report_for(ident, day="2026-11-25", audit_entries=180,
                                     generated_at=dt.datetime(2026, 11, 26, 1)), ident)
    post_batch(receiver, [first, growing], key="batch-audit-1")
    assert listed() == (180, False)

    shorter = sign_report(report_for(ident, day="2026-11-26", audit_entries=90,
                                     generated_at=dt.datetime(2026, 11, 27, 1)), ident)
    post_batch(receiver, [shorter], key="batch-audit-2")
    assert listed() == (90, True)
    page = requests.get(receiver.url + "/installations", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert "shrank between reports" in page.text


@pytest.mark.parametrize("value", [-1, True, "12", 1.5, 10**13])
def test_an_audit_count_that_is_not_a_count_is_refused(ident, value):
    from appliance.core.sync.report import ReportError

    with pytest.raises(ReportError, match="audit_entries"):
        report_for(ident, audit_entries=value)


def test_vendor_cli_imports_lists_and_announces(tmp_path, ident, stranger, runner):
    from appliance.cli import main

    db = str(tmp_path / "cli.db")
    pub = tmp_path / "a.pub"
    pub.write_text(ident.public_key_pem())
    assert runner.invoke(main, ["vendor", "register-installation", "--db", db, "--id", ident.installation_id,
                                "--public-key", str(pub)]).exit_code == 0
    good = tmp_path / "good.asc"
    good.write_text(export_text(envelope_for(ident), armor=True))
    bad = tmp_path / "bad.json"
    bad.write_text(export_text(envelope_for(stranger)))
    result = runner.invoke(main, ["vendor", "sync-import", "--db", db, str(good), str(bad)])
    assert result.exit_code == 1
    assert "stored" in result.output and "unregistered" in result.output
    assert runner.invoke(main, ["vendor", "sync-set-latest-version", "--db", db, "2.0.1"]).exit_code == 0
    assert runner.invoke(main, ["vendor", "sync-set-latest-version", "--db", db, "<b>"]).exit_code != 0
    listing = json.loads(runner.invoke(main, ["vendor", "sync-installations", "--db", db, "--json"]).output)
    assert listing["latest_version"] == "2.0.1"
    assert listing["installations"][0]["messages"] == 3


# --------------------------------------------------------------------------- appliance side


@pytest.fixture
def site(app, receiver):
    from appliance.web.sync import service

    with app.app_context():
        instance = app.extensions["appliance_instance"]
        instance.settings["sync"].update(vendor_url=receiver.url, read_timeout=5)
        receiver.register(load_identity(instance), label="The appliance under test")
        service.set_enabled(instance, True)
        yield instance


def test_unregistered_site_keeps_its_reports_until_the_vendor_registers_it(site, tmp_path, clock):
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    r = Receiver(tmp_path / "fresh.db")
    try:
        site.settings["sync"]["vendor_url"] = r.url
        assert service.run_once(site).status == "retry"
        row = SyncOutbox.get()
        assert row.state == "pending" and "not registered" in row.last_error
        assert "not registered" in service.status(site)["last_error"]
        r.register(load_identity(site))
        clock.advance(hours=1)
        second = service.run_once(site)
        assert second.status == "sent", second
        assert SyncOutbox.get().state == "sent"
    finally:
        r.stop()


def test_vendor_answer_brings_the_latest_version_and_a_verified_licence(site, receiver, tmp_path, monkeypatch, runner):
    from appliance.cli import main
    from appliance.core.licence.testing import TestSigner
    from appliance.web.models.licence import InstalledLicence
    from appliance.web.sync import service

    signer = TestSigner()
    trust_dir = tmp_path / "trust"
    signer.write_public(trust_dir)
    monkeypatch.setenv("APPLIANCE_LICENCE_TRUST_ROOT", str(trust_dir))
    identity = load_identity(site)
    licence_file = tmp_path / "renewed.lic"
    licence_file.write_text(signer.issue(licence_id="LIC-RENEWED-2", installation_id=identity.installation_id))
    vendor_db = str(receiver.db.database)
    result = runner.invoke(main, ["vendor", "sync-set-licence", "--db", vendor_db, "--id", identity.installation_id,
                                  "--licence", str(licence_file), "--pub", str(trust_dir)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["vendor", "sync-set-latest-version", "--db", vendor_db, "1.4.0"]).exit_code == 0

    from appliance.web.db import database_proxy

    database_proxy.connect(reuse_if_open=True)
    outcome = service.run_once(site)
    assert outcome.status == "sent" and outcome.licence_installed is True
    assert outcome.latest_version == "1.4.0"
    status = service.status(site)
    assert status["latest_version"] == "1.4.0"
    assert "LIC-RENEWED-2 installed" in status["licence_note"]
    assert InstalledLicence.select().where(InstalledLicence.licence_id == "LIC-RENEWED-2").exists()


def test_a_licence_the_appliance_does_not_trust_is_refused_and_reports_still_count(site, receiver, tmp_path):
    from appliance.core.licence.testing import TestSigner
    from appliance.vendor_tools.receiver.service import set_licence
    from appliance.web.models.licence import InstalledLicence
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    identity = load_identity(site)
    rogue = TestSigner().issue(licence_id="LIC-ROGUE", installation_id=identity.installation_id, max_seats=10_000)
    receiver.query(lambda: set_licence(identity.installation_id, rogue))
    outcome = service.run_once(site)
    assert outcome.status == "sent" and outcome.licence_installed is False
    assert any("not installed" in m for m in outcome.messages)
    assert SyncOutbox.get().state == "sent"
    assert "refused a licence" in service.status(site)["licence_note"]
    assert not InstalledLicence.select().where(InstalledLicence.licence_id == "LIC-ROGUE").exists()
