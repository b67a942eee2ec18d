"""``appliance --home DIR licence install FILE`` and ``licence show [--json]``."""

from __future__ import annotations

import json

import pytest

from appliance.cli import main
from appliance.core.licence.format import armour, canonical_json, parse_armour
from appliance.core.licence.testing import TestSigner
from tests.helpers import make_instance, trust_test_signer


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


@pytest.fixture
def home(tmp_path, monkeypatch, signer):
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    return make_instance(tmp_path / "home", "sqlite:///appliance.db").home


@pytest.fixture
def run(runner, home):
    """``appliance --home HOME licence ARGS...``"""
    return lambda *args, **kwargs: runner.invoke(main, ["--home", str(home), "licence", *args], **kwargs)


def test_show_in_evaluation(home, run):
    result = run("show")
    assert result.exit_code == 0, result.output
    assert "Evaluation mode" in result.output and "Tenants:        0 of" in result.output
    data = json.loads(run("show", "--json").output)
    assert data["status"] == "evaluation" and data["licence"] is None
    assert data["installation_id"] == (home / "keys" / "installation.id").read_text().strip()


def test_install_then_show_json(run, signer, tmp_path):
    lic = tmp_path / "acme.lic"
    lic.write_text(signer.issue(licence_id="LIC-CLI-1", max_seats=12, customer="ACME"))
    result = run("install", str(lic))
    assert result.exit_code == 0, result.output
    assert "Licence LIC-CLI-1 for ACME installed." in result.output
    assert "non-production" in result.output
    data = json.loads(run("show", "--json").output)
    assert data["status"] == "valid" and data["licence"]["licence_id"] == "LIC-CLI-1"
    assert data["limits"]["max_seats"] == 12 and data["non_production_trust_root"] is True
    assert [h["licence_id"] for h in data["history"]] == ["LIC-CLI-1"]
    again = run("install", str(lic))
    assert again.exit_code == 0 and "was installed already" in again.output


def test_install_refuses_changed_or_foreign_licences(run, signer, tmp_path):
    text = signer.issue()
    parts = parse_armour(text)
    payload = json.loads(parts.payload_bytes)
    payload["max_tenants"] = 999
    forged = tmp_path / "forged.lic"
    forged.write_text(armour(parts.key_id, canonical_json(payload), parts.signature))
    result = run("install", str(forged))
    assert result.exit_code == 1 and "Licence refused" in result.output and "signature" in result.output

    other = tmp_path / "other.lic"
    other.write_text(signer.issue(installation_id="11111111-1111-4111-8111-111111111111"))
    result = run("install", str(other))
    assert result.exit_code == 1 and "is for installation 11111111" in result.output

    stranger = tmp_path / "stranger.lic"
    stranger.write_text(TestSigner().issue())
    result = run("install", str(stranger))
    assert result.exit_code == 1 and "does not trust" in result.output
    assert json.loads(run("show", "--json").output)["history"] == []


def test_install_reads_stdin(run, signer):
    result = run("install", "-", input=signer.issue(licence_id="LIC-STDIN"))
    assert result.exit_code == 0 and "LIC-STDIN" in result.output
