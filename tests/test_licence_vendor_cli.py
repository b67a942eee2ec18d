"""``appliance vendor keygen`` / ``issue-licence``: the vendor's side of the licence."""

from __future__ import annotations

import stat

import pytest

from appliance.cli import main
from appliance.core.licence.format import verify_licence
from appliance.core.licence.trust import TRUST_ROOT_ENV, TrustStore

PASS = "correct horse battery staple"


@pytest.fixture()
def keys(tmp_path, monkeypatch, runner):
    monkeypatch.delenv("APPLIANCE_VENDOR_PASSPHRASE", raising=False)
    pw = tmp_path / "pw"
    pw.write_text(PASS + "\n")
    result = runner.invoke(main, ["vendor", "keygen", "--out", str(tmp_path / "k"), "--passphrase-file", str(pw)])
    assert result.exit_code == 0, result.output
    key = next((tmp_path / "k").glob("*.key"))
    return key, key.with_suffix(".pub"), pw


SPEC = """\
customer: ACME Bank
licence_id: LIC-ACME-1
valid_from: 2026-01-01
expires_at: 2027-01-01T00:00:00Z
max_tenants: 10
max_seats: 50
programs: [webchat, email]
profiles: [minimal]
installation_id: inst-1234
"""


def issue_args(key, spec, out, passphrase_file):
    return ["vendor", "issue-licence", "--key", str(key), "--spec", str(spec), "--out", str(out),
            "--passphrase-file", str(passphrase_file)]


def test_keygen_writes_encrypted_private_key_0600(keys):
    key, pub, _ = keys
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    body = key.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in body
    assert key.stem in pub.read_text()


def test_keygen_refuses_short_passphrase(tmp_path, runner):
    pw = tmp_path / "pw"
    pw.write_text("short")
    result = runner.invoke(main, ["vendor", "keygen", "--out", str(tmp_path / "k"), "--passphrase-file", str(pw)])
    assert result.exit_code != 0 and "at least 12" in result.output


def test_issue_licence_from_spec_verifies_on_the_appliance(keys, tmp_path, monkeypatch, runner):
    key, pub, _pw = keys
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC)
    out = tmp_path / "acme.lic"
    monkeypatch.setenv("APPLIANCE_VENDOR_PASSPHRASE", PASS)
    args = ["vendor", "issue-licence", "--key", str(key), "--spec", str(spec), "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    licence = verify_licence(out.read_text(), TrustStore.load(extra=str(pub)))
    assert licence.customer == "ACME Bank" and licence.max_seats == 50
    assert licence.installation_id == "inst-1234"
    assert licence.valid_from.isoformat() == "2026-01-01T00:00:00+00:00"
    assert licence.grace_days == 30  # the default
    # A second run does not clobber the file.
    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "already exists" in again.output
    # inspect-licence reads it back through the trust root variable.
    monkeypatch.setenv(TRUST_ROOT_ENV, str(pub))
    shown = runner.invoke(main, ["vendor", "inspect-licence", str(out)])
    assert shown.exit_code == 0 and '"production_key": false' in shown.output


def test_issue_licence_wrong_passphrase(keys, tmp_path, runner):
    key, _, _ = keys
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC)
    bad = tmp_path / "bad"
    bad.write_text("not the passphrase")
    result = runner.invoke(main, issue_args(key, spec, tmp_path / "x", bad))
    assert result.exit_code != 0 and "wrong passphrase" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "extra, words",
    [("colour: blue\n", "Unknown field(s) in the spec: colour"), ("grace_days: many\n", "'grace_days'")],
)
def test_issue_licence_rejects_bad_spec(keys, tmp_path, extra, words, runner):
    key, _, pw = keys
    spec = tmp_path / "spec.yml"
    spec.write_text(SPEC + extra)
    result = runner.invoke(main, issue_args(key, spec, tmp_path / "x", pw))
    assert result.exit_code != 0 and words in result.output


def test_vendor_group_is_importable_for_other_commands():
    from appliance.vendor_tools.cli import vendor

    assert "issue-licence" in vendor.commands and main.commands["vendor"] is vendor
