"""The licence file: what verifies, and every way a changed file is refused with a reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.core.licence.format import (
    MAX_LICENCE_BYTES,
    LicenceError,
    armour,
    canonical_json,
    key_id_for,
    parse_armour,
    signed_message,
    verify_licence,
)
from appliance.core.licence.testing import TestSigner, payload
from appliance.core.licence.trust import (
    SHIPPED_DIR,
    TRUST_ROOT_ENV,
    TrustStore,
    load_public_key_file,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


@pytest.fixture(scope="module")
def other_signer():
    return TestSigner()


@pytest.fixture(scope="module")
def store(signer, other_signer):
    return TrustStore({signer.key_id: signer.trusted(), other_signer.key_id: other_signer.trusted()})


def refused(text, store, reason) -> str:
    with pytest.raises(LicenceError) as info:
        verify_licence(text, store)
    assert info.value.reason == reason, str(info.value)
    return str(info.value)


def test_valid_licence_verifies_and_round_trips(signer, store):
    lic = verify_licence(signer.issue(now=NOW, max_seats=7, installation_id="inst-1", replaces="LIC-OLD"), store)
    assert lic.max_seats == 7
    assert lic.installation_id == "inst-1"
    assert lic.replaces == "LIC-OLD"
    assert lic.key_id == signer.key_id
    assert lic.programs == ("webchat", "email", "api")
    assert lic.production is False
    assert lic.summary()["fingerprint"] == lic.fingerprint


def test_text_around_armour_and_crlf_are_tolerated(signer, store):
    text = signer.issue(now=NOW)
    mail = "Hello,\r\nplease find the licence below.\r\n\r\n" + text.replace("\n", "\r\n") + "\r\nRegards\r\n"
    assert verify_licence(mail, store).licence_id == "LIC-TEST-1"


# Each field changed to another well-formed value, signature kept: refused.
CHANGES = {
    "licence_id": "LIC-TEST-2",
    "customer": "Someone Else",
    "issued_at": "2020-01-01T00:00:00Z",
    "valid_from": "2020-01-01T00:00:00Z",
    "expires_at": "2099-01-01T00:00:00Z",
    "grace_days": 365,
    "max_tenants": 1000,
    "max_seats": 1000,
    "programs": ["webchat", "email", "api", "voice"],
    "profiles": ["embedded", "minimal", "maximal"],
    "installation_id": "another-installation",
    "replaces": "LIC-SOMETHING",
}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_changing_any_single_payload_field_is_refused(signer, store, name):
    original = payload(now=NOW)
    text = signer.issue(now=NOW)
    parts = parse_armour(text)
    assert json.loads(parts.payload_bytes) == original
    changed = dict(original, **{name: CHANGES[name]})
    assert changed != original
    forged = armour(parts.key_id, canonical_json(changed), parts.signature)
    message = refused(forged, store, "signature")
    assert "changed after the vendor signed it" in message


def test_removing_a_field_is_refused(signer, store):
    parts = parse_armour(signer.issue(now=NOW))
    changed = payload(now=NOW)
    del changed["grace_days"]
    refused(armour(parts.key_id, canonical_json(changed), parts.signature), store, "signature")


def test_changed_signature_is_refused(signer, store):
    parts = parse_armour(signer.issue(now=NOW))
    sig = bytearray(parts.signature)
    sig[10] ^= 0x01
    message = refused(armour(parts.key_id, parts.payload_bytes, bytes(sig)), store, "signature")
    assert parts.key_id in message


def test_truncated_signature_is_refused(signer, store):
    parts = parse_armour(signer.issue(now=NOW))
    message = refused(armour(parts.key_id, parts.payload_bytes, parts.signature[:63]), store, "signature")
    assert "63 bytes" in message


def test_key_id_changed_to_another_trusted_key_is_refused(signer, other_signer, store):
    parts = parse_armour(signer.issue(now=NOW))
    refused(armour(other_signer.key_id, parts.payload_bytes, parts.signature), store, "signature")


def test_key_id_changed_to_unknown_is_refused(signer, store):
    parts = parse_armour(signer.issue(now=NOW))
    message = refused(armour("ed25519-00000000deadbeef", parts.payload_bytes, parts.signature), store, "unknown_key")
    assert "ed25519-00000000deadbeef" in message and "does not trust" in message


def test_licence_signed_by_unknown_key_is_refused(store):
    stranger = TestSigner()
    message = refused(stranger.issue(), store, "unknown_key")
    assert stranger.key_id in message


def test_signature_is_checked_before_payload_is_parsed(signer, store):
    """Garbage behind a bad signature is reported as a signature failure, not a JSON error."""
    junk = b'{"not json'
    bogus = armour(signer.key_id, junk, b"\x00" * 64)
    refused(bogus, store, "signature")
    # The same junk properly signed gets as far as the payload checks.
    good_sig = signer.key.sign(signed_message(signer.key_id, junk))
    refused(armour(signer.key_id, junk, good_sig), store, "payload")


def _signed_raw(signer, payload_bytes: bytes) -> str:
    return armour(signer.key_id, payload_bytes, signer.key.sign(signed_message(signer.key_id, payload_bytes)))


@pytest.mark.parametrize(
    "change, words",
    [
        ({"colour": "blue"}, "Unknown licence field"),
        ({"max_seats": "5"}, "'max_seats' must be a whole number"),
        ({"max_seats": True}, "'max_seats' must be a whole number"),
        ({"max_seats": -1}, "'max_seats' must be a whole number"),
        ({"grace_days": 1.5}, "'grace_days' must be a whole number"),
        ({"programs": "webchat"}, "'programs' must be a list"),
        ({"programs": ["webchat", "webchat"]}, "lists a name twice"),
        ({"profiles": ["Minimal"]}, "'profiles' must be a list"),
        ({"expires_at": "2027-01-01"}, "'expires_at' must be a UTC time"),
        ({"expires_at": "2027-02-30T00:00:00Z"}, "not a real date"),
        ({"customer": ""}, "'customer' must be non-empty"),
        ({"licence_id": "bad id"}, "'licence_id' must be"),
        ({"valid_from": "2030-01-01T00:00:00Z", "expires_at": "2029-01-01T00:00:00Z"}, "expires before"),
    ],
)
def test_signed_but_malformed_payload_is_refused(signer, store, change, words):
    raw = canonical_json(dict(payload(now=NOW), **change))
    message = refused(_signed_raw(signer, raw), store, "payload")
    assert words in message


def test_missing_required_field_is_refused(signer, store):
    body = payload(now=NOW)
    del body["max_tenants"]
    assert "'max_tenants'" in refused(_signed_raw(signer, canonical_json(body)), store, "payload")


def test_non_canonical_payload_is_refused(signer, store):
    raw = json.dumps(payload(now=NOW), indent=1).encode()
    assert "canonical" in refused(_signed_raw(signer, raw), store, "payload")


def test_duplicate_json_key_is_refused(signer, store):
    raw = canonical_json(payload(now=NOW))[:-1] + b',"customer":"X"}'
    assert "appears twice" in refused(_signed_raw(signer, raw), store, "payload")


def test_oversize_input_is_refused_before_anything_else(signer, store):
    text = signer.issue(now=NOW) + "\n" + "x" * MAX_LICENCE_BYTES
    assert str(MAX_LICENCE_BYTES) in refused(text, store, "size")


@pytest.mark.parametrize(
    "mutate, reason, words",
    [
        (lambda t: t.replace("Format: 1", "Format: 2"), "format", "format '2' is not supported"),
        (lambda t: t.replace("Format: 1\n", "Format: 1\nCustomer: ACME\n"), "armour", "Unknown licence header"),
        (lambda t: t.replace("Format: 1\n", ""), "armour", "no 'Format' header"),
        (lambda t: t.replace("-----END APPLIANCE LICENCE-----", ""), "armour", "No licence found"),
        (lambda t: t + t, "armour", "More than one"),
        (lambda t: t.replace("=\n", "!\n", 1) if "=\n" in t else t.replace("\n\n", "\n\n!", 1), "armour", "base64"),
    ],
)
def test_malformed_armour_is_refused(signer, store, mutate, reason, words):
    message = refused(mutate(signer.issue(now=NOW)), store, reason)
    assert words in message


def test_non_ascii_is_refused(signer, store):
    assert "ASCII" in refused(signer.issue(now=NOW).replace("Format: 1", "Format: 1\u00e9"), store, "armour")


def test_shipped_vendor_key_is_production_and_named_by_its_id():
    pubs = sorted(SHIPPED_DIR.glob("*.pub"))
    assert pubs, "the appliance must ship at least one vendor public key"
    for pub in pubs:
        assert pub.stem == key_id_for(load_public_key_file(pub))
    for path in SHIPPED_DIR.iterdir():
        assert b"PRIVATE KEY" not in path.read_bytes(), f"{path} holds a private key"
    store = TrustStore.load(extra="")
    assert store.keys and all(k.production for k in store.keys.values())
    assert not store.non_production_in_use


def test_env_trust_root_is_flagged_non_production(signer, tmp_path, monkeypatch):
    signer.write_public(tmp_path)
    monkeypatch.setenv(TRUST_ROOT_ENV, str(tmp_path))
    store = TrustStore.load()
    assert store.non_production_in_use
    lic = verify_licence(signer.issue(now=NOW), store)
    assert lic.production is False
    # A single file works as a trust root too.
    monkeypatch.setenv(TRUST_ROOT_ENV, str(Path(tmp_path) / f"{signer.key_id}.pub"))
    assert TrustStore.load().get(signer.key_id) is not None


def test_payload_bytes_are_exactly_what_was_signed(signer):
    text = signer.issue(now=NOW)
    parts = parse_armour(text)
    b64 = "".join(text.split("\n\n")[1].split())
    assert base64.b64decode(b64) == parts.payload_bytes == canonical_json(payload(now=NOW))
