"""Encryption in the running app: UI search by blind index, a tampered field on a page,
the app refusing a wrong master key, and the ``appliance keys`` commands."""

from __future__ import annotations

import pytest

from appliance.cli import main
from appliance.core.config import ConfigError
from appliance.web.crypto import key_file_path, master
from appliance.web.crypto.master import encode_key_file, generate_key
from appliance.web.db import database_proxy
from tests.helpers import login


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setattr(master, "SCRYPT_N", 2**12)


def raw_update(table: str, column: str, value: bytes, row_id: int) -> None:
    """Write stored bytes as they are, past the field's encryption (on either engine)."""
    p = database_proxy.param
    database_proxy.execute_sql(f'UPDATE "{table}" SET {column} = {p} WHERE id = {p}', [value, row_id])


def test_ui_contact_search_uses_blind_indexes(app, client, world):
    tenant = world.tenants["A"]
    assert login(client, world.email("A", "agent")).status_code == 302
    page = client.get(f"/t/{tenant.id}/contacts", query_string={"q": "0049 30 123-4567"})
    assert page.status_code == 200 and "Contact A" in page.get_data(as_text=True)
    page = client.get(f"/t/{tenant.id}/contacts", query_string={"q": "C@A.EXAMPLE"})
    assert "Contact A" in page.get_data(as_text=True)
    page = client.get(f"/t/{tenant.id}/contacts", query_string={"q": "+49 30 7654321"})
    assert "Contact A" not in page.get_data(as_text=True)


def test_tampered_message_shows_an_integrity_error_and_the_page_still_works(app, client, world):
    from appliance.web.models.audit import AuditEvent
    from appliance.web.models.contact_center import Message

    tenant = world.tenants["A"]
    conv = world.objects["A"]["conversation"]
    with app.app_context():
        database_proxy.connect(reuse_if_open=True)
        msg = Message.get(Message.conversation == conv.id)
        blob = bytearray(msg.__data__["body"])
        blob[-1] ^= 0x01
        raw_update("message", "body", bytes(blob), msg.id)
    login(client, world.email("A", "agent"))
    page = client.get(f"/t/{tenant.id}/conversations/{conv.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "[integrity error]" in html
    assert "Contact A" in html  # the rest of the page decrypts fine
    api = client.get(f"/api/v1/conversations/{conv.id}/messages", headers=world.headers("A", "admin"))
    assert api.status_code == 200 and api.get_json()["items"][0]["body"] == "[integrity error]"
    with app.app_context():
        database_proxy.connect(reuse_if_open=True)
        events = list(AuditEvent.select().where(AuditEvent.action == "crypto.integrity_failed"))
    assert events and all("hello from A" not in e.details for e in events)
    assert all(e.target == f"message:{msg.uid}" for e in events)


def test_app_refuses_a_wrong_master_key(app, instance):
    from appliance.web import create_app

    key_file_path(instance).write_bytes(encode_key_file(generate_key()))
    with pytest.raises(ConfigError) as err:
        create_app(instance=instance)
    assert str(key_file_path(instance)) in str(err.value)


def test_app_refuses_a_missing_master_key(app, instance):
    from appliance.web import create_app

    key_file_path(instance).unlink()
    with pytest.raises(ConfigError, match="init"):
        create_app(instance=instance)


def test_keys_commands(app, world, instance, monkeypatch, tmp_path, runner):
    import yaml

    from appliance.core.config import write_config

    settings = yaml.safe_load(instance.config_path.read_text())
    write_config(instance.home, {**settings, "crypto_key_cache_seconds": 0.2})  # short rotation settle
    home = ["--home", str(instance.home)]
    run = runner.invoke
    status = run(main, [*home, "keys", "status"])
    assert status.exit_code == 0, status.output
    assert "master key:" in status.output and f"tenant {world.tenants['A'].id}:" in status.output

    rotated = run(main, [*home, "keys", "rotate-tenant", "--all", "--batch-size", "2"])
    assert rotated.exit_code == 0, rotated.output
    assert rotated.output.count("old key retired") == len(world.tenants)

    verified = run(main, [*home, "keys", "verify"])
    assert verified.exit_code == 0 and "0 failed" in verified.output, verified.output

    monkeypatch.setenv("APPLIANCE_RECOVERY_PASSPHRASE", "a long recovery passphrase")
    kit = tmp_path / "kit.txt"
    exported = run(main, [*home, "keys", "export-recovery", "-o", str(kit)])
    assert exported.exit_code == 0 and kit.exists(), exported.output
    original = key_file_path(instance).read_bytes()
    key_file_path(instance).unlink()
    missing = run(main, [*home, "keys", "status"])
    assert missing.exit_code != 0 and "import-recovery" in missing.output
    restored = run(main, [*home, "keys", "import-recovery", str(kit)])
    assert restored.exit_code == 0, restored.output
    assert key_file_path(instance).read_bytes() == original

    rm = run(main, [*home, "keys", "rotate-master", "--yes"])
    assert rm.exit_code == 0, rm.output
    assert key_file_path(instance).read_bytes() != original
    stale = run(main, [*home, "keys", "import-recovery", "--replace", str(kit)])
    assert stale.exit_code != 0 and "database needs" in stale.output
    verified = run(main, [*home, "keys", "verify"])
    assert verified.exit_code == 0, verified.output

    key_file_path(instance).write_bytes(encode_key_file(generate_key()))
    wrong = run(main, [*home, "keys", "verify"])
    assert wrong.exit_code != 0 and str(key_file_path(instance)) in wrong.output


def test_keys_verify_reports_failures_and_finishes(app, world, instance, runner):
    from appliance.web.models.contact_center import Contact

    with app.app_context():
        database_proxy.connect(reuse_if_open=True)
        for key in ("A", "B1"):
            c = Contact.get_by_id(world.objects[key]["contact"].id)
            blob = bytearray(c.__data__["name"])
            blob[-2] ^= 0x10
            raw_update("contact", "name", bytes(blob), c.id)
        database_proxy.close()
    result = runner.invoke(main, ["--home", str(instance.home), "keys", "verify"])
    assert result.exit_code == 1
    assert "2 failed" in result.output
    assert result.output.count("column=name") == 2
