"""``appliance support-bundle``: useful contents, no secrets, no seeded personal data in any encoding."""

from __future__ import annotations

import json
import tarfile

import pytest

from appliance.cli import main
from appliance.core.config import write_config
from appliance.core.redact import TEXT_RULES, redact_settings, scrub_text
from tests.helpers import running_app
from tests.test_backup import PERSONAL, assert_no_personal_data, seed


@pytest.fixture
def seeded(instance, app):
    seed(app)
    settings = dict(instance.settings)
    write_config(instance.home, {"database_url": settings["database_url"],
                                 "metrics_token": "metrics-secret-token-value-123456",
                                 "sync": {"vendor_url": "https://user:hunter2pass@vendor.example/sync"}})
    logs = instance.home / "logs"
    logs.mkdir()
    # What a careless log line could hold: the bundle must scrub it by its rules.
    (logs / "web.log").write_text(
        "INFO request from 203.0.113.7 ok\n"
        f"ERROR mail to {PERSONAL[1]} failed; phone {PERSONAL[2]}\n"
        "DEBUG Authorization: Bearer abcdefABCDEF0123456789abcdefABCDEF\n"
        "DEBUG password=hunter2pass\n"
        "INFO worker started\n")
    return instance


def members(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_bundle_has_what_support_needs_and_no_personal_data(runner, seeded, tmp_path):
    out = tmp_path / "bundle.tar.gz"
    result = runner.invoke(main, ["--home", str(seeded.home), "support-bundle", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    files = members(out)
    names = {n.split("/", 1)[1] for n in files}
    assert {"versions.json", "config.json", "status.json", "schema.json", "keys.json", "backups.json",
            "logs/web.log"} <= names
    schema = json.loads(files["support-bundle/schema.json"])
    assert schema["version"] > 0 and schema["row_counts"]["message"] == 2
    log = files["support-bundle/logs/web.log"].decode()
    assert "worker started" in log and "<email>" in log and "<ip>" in log
    everything = out.read_bytes() + b"".join(files.values())
    assert_no_personal_data(everything, "the support bundle")
    for secret in (b"hunter2pass", b"metrics-secret-token-value", b"abcdefABCDEF0123456789"):
        assert secret not in everything
    key = (seeded.home / "keys" / "master.key").read_bytes().split(b":", 1)[1].strip()
    assert key not in everything


def test_preview_lists_and_writes_nothing(runner, seeded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["--home", str(seeded.home), "support-bundle", "--preview"])
    assert result.exit_code == 0 and "logs/web.log" in result.output and "config.json" in result.output
    assert not list(tmp_path.glob("*.tar.gz"))


SAMPLES = [
    ("mail erika.mustermann@example.org now", "erika"),
    ("call +49 170 5550123", "5550123"),
    ("call 030/1234567", "1234567"),
    ("from 198.51.100.23", "198.51.100.23"),
    ("from 2001:db8:0:0:1:0:0:1", "2001:db8"),
    ("postgresql://app:s3cret@db/app", "s3cret"),
    ("Authorization: Bearer tok_abc", "tok_abc"),
    ("api_key=xyz123", "xyz123"),
    ("session 6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a", "6f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a"),
    ("Cookie: session=abc; other=def", "abc"),
    ("token: tok_live_1", "tok_live_1"),
]


@pytest.mark.parametrize(("text", "gone"), SAMPLES)
def test_each_text_rule(text, gone):
    assert gone not in scrub_text(text)


def test_every_rule_is_exercised_and_harmless_text_survives():
    for name, pattern, _ in TEXT_RULES:
        assert any(pattern.search(text) for text, _ in SAMPLES), f"rule {name} has no sample"
    assert scrub_text("worker started, 12 jobs in 3.5 s") == "worker started, 12 jobs in 3.5 s"


def test_settings_redaction_keeps_paths_and_drops_secrets():
    out = redact_settings({"metrics_token": "abc", "master_key_file": "keys/master.key",
                           "database_url": "postgresql://u:pw@h/db", "sync": {"vendor_url": ""},
                           "login_throttle_attempts": 5})
    assert out == {"metrics_token": "<redacted>", "master_key_file": "keys/master.key",
                   "database_url": "postgresql://u:<redacted>@h/db", "sync": {"vendor_url": ""},
                   "login_throttle_attempts": 5}


def test_bundle_of_a_running_instance_on_each_engine(seeded, tmp_path):
    from appliance.web import support_bundle

    out = tmp_path / "b.tar.gz"
    with running_app(seeded) as app, app.app_context():
        names = support_bundle.build(seeded, app.extensions["database"], out)
    assert "status.json" in names
    status = json.loads(members(out)["support-bundle/status.json"])
    assert any(c["name"] == "Database" and c["level"] == "ok" for c in status)


def test_bundle_when_the_database_is_down(runner, tmp_path):
    from tests.pg import free_port

    home = tmp_path / "down"
    write_config(home, {"database_url": f"postgresql://app:pw-not-shown@127.0.0.1:{free_port()}/app"})
    out = tmp_path / "down.tar.gz"
    result = runner.invoke(main, ["--home", str(home), "support-bundle", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "unreachable" in result.output and "pw-not-shown" not in result.output
    files = members(out)
    assert "error" in json.loads(files["support-bundle/schema.json"])
    assert b"pw-not-shown" not in b"".join(files.values())
