"""The report format on its own: identity files, strict validation, signatures, export files."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
import uuid

import pytest

from appliance.core.identity import IdentityError, ensure_identity, load_identity, load_public_key
from appliance.core.sync.client import SyncConfigError, backoff_delay, reports_url
from appliance.core.sync.report import (
    ARMOR_BEGIN,
    ReportError,
    build_report,
    canonical_json,
    export_text,
    parse_export,
    sign_report,
    validate_report,
    verify_envelope,
)


class Home:
    def __init__(self, path):
        self.home = path


@pytest.fixture
def identity(tmp_path):
    home = Home(tmp_path / "home")
    ensure_identity(home)
    return load_identity(home)


def lookup_for(*identities):
    keys = {i.installation_id: i.public_key for i in identities}
    return keys.get


def a_report(identity, **overrides):
    report = build_report(
        installation_id=identity.installation_id,
        version="0.1.0",
        profile="minimal",
        days=[
            {
                "date": "2026-11-24",
                "tenants": [
                    {"tenant": 2, "conversations": 5, "messages": 40, "active_operators": 2,
                     "seats_used": 3, "programs": ["webchat", "email"]},
                    {"tenant": 1, "conversations": 0, "messages": 0, "active_operators": 0,
                     "seats_used": 1, "programs": []},
                ],
            }
        ],
    )
    report.update(overrides)
    return report


# --------------------------------------------------------------------------- identity


def test_identity_is_created_once_private_and_never_overwritten(tmp_path):
    home = Home(tmp_path / "home")
    assert ensure_identity(home) is True
    key_file = tmp_path / "home/keys/installation.key"
    id_file = tmp_path / "home/keys/installation.id"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(id_file.stat().st_mode) == 0o600
    first = load_identity(home)
    key_bytes = key_file.read_bytes()
    assert ensure_identity(home) is False  # a second init changes nothing
    assert key_file.read_bytes() == key_bytes
    assert load_identity(home).installation_id == first.installation_id
    assert str(uuid.UUID(first.installation_id)) == first.installation_id


def test_identity_refuses_a_key_others_can_read(tmp_path):
    home = Home(tmp_path / "home")
    ensure_identity(home)
    os.chmod(tmp_path / "home/keys/installation.key", 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_identity(home)


def test_public_key_is_found_inside_surrounding_text(identity):
    text = f"installation id: {identity.installation_id}\n{identity.public_key_pem()}\nthanks"
    assert load_public_key(text).public_bytes_raw() == identity.public_key.public_bytes_raw()


# --------------------------------------------------------------------------- validation


def test_a_counts_only_report_is_valid_and_sorted(identity):
    report = a_report(identity)
    assert [t["tenant"] for t in report["days"][0]["tenants"]] == [1, 2]
    assert report["days"][0]["tenants"][1]["programs"] == ["email", "webchat"]
    assert validate_report(report) is report


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["days"][0]["tenants"][0].update(contact_email="ivan@example.ru"), "not allowed"),
        (lambda r: r["days"][0]["tenants"][0].update(note="called about card 4111"), "not allowed"),
        (lambda r: r.update(comment="hello"), "not allowed"),
        (lambda r: r["days"][0].update(top_contact="Ivan Petrov"), "not allowed"),
        (lambda r: r["days"][0]["tenants"][0].update(messages="40"), "integer count"),
        (lambda r: r["days"][0]["tenants"][0].update(messages=4.5), "integer count"),
        (lambda r: r["days"][0]["tenants"][0].update(messages=True), "integer count"),
        (lambda r: r["days"][0]["tenants"][0].update(messages=-1), "integer count"),
        (lambda r: r["days"][0]["tenants"][0].update(tenant="acme-bank"), "tenant id"),
        (lambda r: r["days"][0]["tenants"][0].update(tenant="+7 916 555 01 99"), "tenant id"),
        (lambda r: r["days"][0]["tenants"][0].update(programs=["ivan@example.ru"]), "program code"),
        (lambda r: r["days"][0]["tenants"][0].update(programs=["Web Chat for Ivan"]), "program code"),
        (lambda r: r["days"][0]["tenants"][0].update(name="Acme Bank"), "not allowed"),
        (lambda r: r.update(tenant_names=True), "not allowed by this installation"),
        (lambda r: r.update(version="1.0 (built by ivan@corp)"), "version"),
        (lambda r: r.update(profile="ivan"), "profile"),
        (lambda r: r["days"][0].update(date="24.11.2026"), "date"),
        (lambda r: r.update(days=r["days"] * 2), "increasing order"),
        (lambda r: r["days"][0]["tenants"].append(copy.deepcopy(r["days"][0]["tenants"][0])), "twice"),
        (lambda r: r.pop("installation_id"), "missing"),
    ],
)
def test_anything_but_counts_is_rejected(identity, mutate, message):
    report = a_report(identity)
    mutate(report)
    with pytest.raises(ReportError, match=message) as info:
        validate_report(report, allow_names=False)
    assert info.value.code == "invalid"


def test_rejection_names_the_field_but_never_echoes_its_value(identity):
    report = a_report(identity)
    report["days"][0]["tenants"][0]["contact_phone"] = "+7 916 555 01 99"
    with pytest.raises(ReportError) as info:
        validate_report(report)
    assert "contact_phone" in str(info.value)
    assert "916" not in str(info.value)


def test_tenant_names_only_when_the_customer_allows_it(identity):
    days = [{"date": "2026-11-24", "tenants": [{"tenant": 2, "name": "Acme Bank", "programs": []}]}]
    kwargs = dict(installation_id=identity.installation_id, version="0.1.0", profile="minimal", days=days)
    without = build_report(**kwargs)
    assert "name" not in without["days"][0]["tenants"][0]
    named = build_report(**kwargs, tenant_names=True)
    assert named["days"][0]["tenants"][0]["name"] == "Acme Bank"
    # The appliance's own setting wins over what the report claims.
    with pytest.raises(ReportError, match="not allowed"):
        validate_report(named, allow_names=False)
    named["days"][0]["tenants"][0]["name"] = "Acme\nBank"
    with pytest.raises(ReportError, match="printable"):
        validate_report(named, allow_names=True)


def test_the_same_day_has_the_same_report_id(identity):
    assert a_report(identity)["report_id"] == a_report(identity)["report_id"]


# --------------------------------------------------------------------------- signatures


def test_signed_report_verifies(identity):
    envelope = sign_report(a_report(identity), identity)
    assert verify_envelope(json.loads(json.dumps(envelope)), lookup_for(identity))["report_id"]


def test_tampered_count_is_rejected(identity):
    envelope = sign_report(a_report(identity), identity)
    envelope["report"]["days"][0]["tenants"][1]["messages"] = 39
    with pytest.raises(ReportError) as info:
        verify_envelope(envelope, lookup_for(identity))
    assert info.value.code == "bad_signature"
    assert "does not match" in info.value.reason


def test_unsigned_report_is_rejected(identity):
    envelope = sign_report(a_report(identity), identity)
    for empty in (None, ""):
        envelope["signature"] = empty
        with pytest.raises(ReportError) as info:
            verify_envelope(envelope, lookup_for(identity))
        assert info.value.code == "unsigned"
    del envelope["signature"]
    with pytest.raises(ReportError) as info:
        verify_envelope(envelope, lookup_for(identity))
    assert info.value.code == "unsigned"


def test_unregistered_installation_is_rejected(identity, tmp_path):
    envelope = sign_report(a_report(identity), identity)
    with pytest.raises(ReportError) as info:
        verify_envelope(envelope, lookup_for())
    assert info.value.code == "unregistered"
    assert identity.installation_id in info.value.reason


def test_report_signed_by_another_installation_key_is_rejected(identity, tmp_path):
    other_home = Home(tmp_path / "other")
    ensure_identity(other_home)
    other = load_identity(other_home)
    # The forger signs a report that claims to be ``identity``'s with its own key.
    forged = a_report(identity)
    signature = other.sign(b"appliance-sync-report/v1\n" + canonical_json(forged))
    envelope = sign_report(a_report(identity), identity)
    envelope["signature"] = base64.b64encode(signature).decode()
    with pytest.raises(ReportError) as info:
        verify_envelope(envelope, lookup_for(identity, other))
    assert info.value.code == "bad_signature"


def test_signature_over_free_text_still_fails_validation(identity):
    """Even a genuinely signed report is refused if it carries free text (vendor-side guard)."""
    from appliance.core.sync import report as mod

    report = a_report(identity)
    report["days"][0]["tenants"][0]["note"] = "Ivan Petrov"
    signature = identity.sign(mod.SIGNING_CONTEXT + canonical_json(report))
    envelope = {"format": mod.ENVELOPE_FORMAT, "v": 1, "alg": "Ed25519", "report": report,
                "signature": base64.b64encode(signature).decode()}
    with pytest.raises(ReportError) as info:
        verify_envelope(envelope, lookup_for(identity))
    assert info.value.code == "invalid"


def test_sign_refuses_a_report_of_another_installation(identity, tmp_path):
    other_home = Home(tmp_path / "other")
    ensure_identity(other_home)
    with pytest.raises(ReportError, match="not this installation"):
        sign_report(a_report(identity), load_identity(other_home))


# --------------------------------------------------------------------------- export files


@pytest.mark.parametrize("armor", [False, True])
def test_export_file_round_trips(identity, armor):
    envelope = sign_report(a_report(identity), identity)
    text = export_text(envelope, armor=armor)
    assert text.startswith(ARMOR_BEGIN) == armor
    assert verify_envelope(parse_export(text.encode()), lookup_for(identity)) == envelope["report"]


def test_tampered_export_files_are_rejected(identity):
    envelope = sign_report(a_report(identity), identity)
    readable = export_text(envelope).replace('"messages": 40', '"messages": 4')
    assert '"messages": 4,' in readable
    with pytest.raises(ReportError) as info:
        verify_envelope(parse_export(readable), lookup_for(identity))
    assert info.value.code == "bad_signature"

    armored = export_text(envelope, armor=True)
    lines = armored.splitlines()
    raw = bytearray(base64.b64decode("".join(lines[1:-1])))
    raw[raw.index(b'"messages":40') + 11] = ord("7")
    body = base64.b64encode(bytes(raw)).decode()
    tampered = "\n".join([lines[0], body, lines[-1]])
    with pytest.raises(ReportError) as info:
        verify_envelope(parse_export(tampered), lookup_for(identity))
    assert info.value.code == "bad_signature"

    with pytest.raises(ReportError, match="END line"):
        parse_export("\n".join(lines[:-1]))
    with pytest.raises(ReportError, match="not an appliance sync export"):
        parse_export(b"PK\x03\x04 a zip file")


def test_duplicate_json_keys_are_refused_not_resolved(identity):
    envelope = sign_report(a_report(identity), identity)
    text = export_text(envelope)
    doubled = text.replace('"v": 1', '"v": 1, "v": 1', 1)
    with pytest.raises(ReportError, match="repeats the key"):
        parse_export(doubled)


# --------------------------------------------------------------------------- sender settings


def test_plain_http_only_to_loopback_or_when_allowed():
    assert reports_url("https://sync.vendor.example/") == "https://sync.vendor.example/api/v1/reports"
    assert reports_url("http://127.0.0.1:8700").startswith("http://127.0.0.1:8700/")
    assert reports_url("http://[::1]:8700").startswith("http://[::1]:8700/")
    with pytest.raises(SyncConfigError, match="plain http"):
        reports_url("http://sync.vendor.example")
    assert reports_url("http://sync.vendor.example", allow_http=True)
    with pytest.raises(SyncConfigError, match="credentials"):
        reports_url("https://user:pw@sync.vendor.example")
    with pytest.raises(SyncConfigError, match="not set"):
        reports_url("")
    with pytest.raises(SyncConfigError, match="https://"):
        reports_url("ftp://sync.vendor.example")


def test_backoff_grows_with_jitter_and_a_ceiling():
    import random

    rng = random.Random(7)
    delays = [backoff_delay(n, 60, 3600, rng) for n in range(1, 12)]
    assert 30 <= delays[0] <= 60
    assert 240 <= delays[3] <= 480
    assert all(1800 <= d <= 3600 for d in delays[7:])
    assert len({round(d, 3) for d in delays}) == len(delays)  # jittered, not lock-step
