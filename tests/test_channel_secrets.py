"""Channel signing secrets: sealed at rest (also the ones an upgrade found in plaintext), covered
by key rotation, and a rotated-out secret that verifies for a bounded grace period, audited."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from urllib.parse import urlparse

import pytest

from appliance.core.config import DEFAULTS, RULES
from appliance.core.config_schema import problems
from appliance.web import db as dbmod
from appliance.web import migrations
from appliance.web import provisioning as setup
from appliance.web.channels.webhook import signed_headers
from appliance.web.crypto import envelope
from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Channel, Contact
from appliance.web.services.visitors import sign_identity
from tests.helpers import START, login, raw_database, running_app
from tests.test_crypto_at_rest import scan


def _deliver(client, channel, body: str, secret: str, delivery_id: str):
    raw = json.dumps({"id": delivery_id, "body": body}).encode()
    return client.post(f"/hooks/{channel.public_key}", data=raw,
                       headers={"Content-Type": "application/json"} | signed_headers(secret, raw))


def _rotate(client, channel, headers, **body):
    answer = client.post(f"/api/v1/channels/{channel.id}/secret", headers=headers, json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_signing_secrets_are_not_in_the_raw_database(request, app, client, world, instance):
    with raw_database(request, instance) as read:
        tenant, headers = world.tenants["A"], world.headers("A", "admin")
        made = client.post(f"/api/v1/tenants/{tenant.id}/channels", headers=headers,
                           json={"kind": "webhook", "name": "Core banking"}).get_json()
        first = made["signing_secret"]
        channel = Channel.get_by_id(made["id"])
        second = _rotate(client, channel, headers)["signing_secret"]  # the first is kept for the grace period
        assert _deliver(client, channel, "signed with the new one", second, "d-1").status_code == 202
        assert _deliver(client, channel, "signed with the old one", first, "d-2").status_code == 202
        for path in (f"/api/v1/channels/{channel.id}", f"/api/v1/channels/{channel.id}/settings",
                     f"/api/v1/tenants/{tenant.id}/channels"):
            shown = client.get(path, headers=headers).get_data(as_text=True)
            assert first not in shown and second not in shown, path  # write-only
        blob = read()
    assert b"Core banking" in blob  # the scan sees plaintext that is really there
    assert scan(blob, {"current secret": second, "previous secret": first}) == []


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_an_upgrade_seals_the_plaintext_secrets_it_finds_and_leaves_no_trace(engine, request, tmp_path,
                                                                            monkeypatch):
    db_url = f"sqlite:///{tmp_path / 'home' / 'appliance.db'}" if engine == "sqlite" else (
        request.getfixturevalue("pg_url"))
    home = tmp_path / "home"
    home.mkdir()
    setup.ensure_config(home, {"database_url": db_url})
    from appliance.core.config import Instance

    instance = Instance.load(home)
    setup.ensure_keys(instance)
    everything = migrations.available()
    before = [(v, n) for v, n in everything if v < 24]
    monkeypatch.setattr(migrations, "available", lambda: before)
    setup.migrate(instance)
    old_secret = "PLAINTEXT-SIGNING-SECRET-" + "q" * 20
    core = importlib.import_module("appliance.web.migrations.m0001_core")
    database = dbmod.bind(instance.database_url)
    with database.connection_context(), database.bind_ctx(core.MODELS):
        tenant = core.Tenant.create(level=1, kind="provider", name="Provider", slug="p", path="/", brand_color="#000",
                                    credit_limit=0, is_active=True, created_at=START)
        old = core.Channel.create(tenant=tenant.id, kind="webhook", name="Legacy gateway", public_key="pk_legacy",
                                  secret=old_secret, shared=False, is_active=True, created_at=START)
        if engine == "sqlite":
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            assert old_secret.encode() in (home / "appliance.db").read_bytes()  # really on disk before

    monkeypatch.setattr(migrations, "available", lambda: everything)
    assert setup.migrate(instance) == [n for v, n in everything if v >= 24]
    database = dbmod.bind(instance.database_url)
    with database.connection_context():
        if engine == "sqlite":
            database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            blob = b"".join(p.read_bytes() for p in home.glob("appliance.db*"))
        else:
            blob = request.getfixturevalue("pg_server").dump(urlparse(instance.database_url).path.lstrip("/"))
        assert b"Legacy gateway" in blob
        assert scan(blob, {"migrated secret": old_secret}) == []

    # The sender keeps signing with the secret it has: the upgrade changed nothing for it.
    with running_app(instance) as app:
        from appliance.web.services import licence

        monkeypatch.setattr(licence, "require_program_for_channel", lambda tenant, kind: None)
        channel = Channel.get_by_id(old.id)
        assert channel.secret == old_secret and channel.uid is not None
        assert _deliver(app.test_client(), channel, "after the upgrade", old_secret, "u-1").status_code == 202


def test_a_bare_upgrade_without_keys_refuses_to_touch_plaintext_secrets(tmp_path, monkeypatch):
    from appliance.core.config import Instance
    from appliance.web.migrations.m0024_channel_secrets import MissingKeys

    home = tmp_path / "home"
    home.mkdir()
    setup.ensure_config(home, {"database_url": f"sqlite:///{home / 'appliance.db'}"})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    everything = migrations.available()
    monkeypatch.setattr(migrations, "available", lambda: [(v, n) for v, n in everything if v < 24])
    setup.migrate(instance)
    core = importlib.import_module("appliance.web.migrations.m0001_core")
    database = dbmod.bind(instance.database_url)
    monkeypatch.setattr("appliance.web.crypto.keyring._current", None)
    with database.connection_context():
        with database.bind_ctx(core.MODELS):
            tenant = core.Tenant.create(level=1, kind="provider", name="P", slug="p", path="/", brand_color="#000",
                                        credit_limit=0, is_active=True, created_at=START)
            core.Channel.create(tenant=tenant.id, kind="webhook", name="G", public_key="pk_g", secret="plain" * 6,
                                shared=False, is_active=True, created_at=START)
        monkeypatch.setattr(migrations, "available", lambda: everything)
        with pytest.raises(MissingKeys, match="appliance migrate"):
            migrations.upgrade(database)
        assert migrations.current_version(database) == 23  # nothing half-done
        assert "uid" not in {c.name for c in database.get_columns("channel")}


def test_rotated_secret_verifies_within_its_grace_then_is_refused(app, client, world, clock):
    channel, headers = world.objects["A"]["shared_channel"], world.headers("A", "admin")
    old = channel.secret
    answer = _rotate(client, channel, headers)
    new = answer["signing_secret"]
    assert answer["previous_valid_until"] == (START + dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")

    clock.advance(hours=23, minutes=58)
    assert _deliver(client, channel, "still the old secret", old, "g-1").status_code == 202
    assert _deliver(client, channel, "and again", old, "g-2").status_code == 202
    assert _deliver(client, channel, "the new secret", new, "g-3").status_code == 202
    used = AuditEvent.select().where(AuditEvent.action == "channel.previous_secret_used",
                                     AuditEvent.target == f"channel:{channel.id}")
    assert used.count() == 1  # audited, but not once per delivery
    status = client.get(f"/api/v1/channels/{channel.id}/settings", headers=headers).get_json()["status"]
    assert status["previous_secret_used_at"] == clock.naive().strftime("%Y-%m-%dT%H:%M:%S") + "Z"
    login(client, world.email("A", "admin"))
    page = client.get(f"/t/{world.tenants['A'].id}/admin/channels").get_data(as_text=True)
    assert f'data-previous-secret="{channel.id}"' in page and "the sender has not switched yet" in page

    clock.advance(minutes=2, seconds=1)  # past the 24 hours
    late = _deliver(client, channel, "too late", old, "g-4")
    assert late.status_code == 401
    assert "previous signing secret, which stopped verifying at" in late.get_json()["message"]
    assert _deliver(client, channel, "the new secret still", new, "g-5").status_code == 202
    assert f'data-previous-secret="{channel.id}"' not in client.get(
        f"/t/{world.tenants['A'].id}/admin/channels").get_data(as_text=True)

    # A leaked secret: keep_previous false ends it at once.
    cut = _rotate(client, channel, headers, keep_previous=False)
    assert cut["previous_valid_until"] is None
    refused = _deliver(client, channel, "leaked", new, "g-6")
    assert refused.status_code == 401 and "X-Signature must be" in refused.get_json()["message"]
    assert _deliver(client, channel, "newest", cut["signing_secret"], "g-7").status_code == 202


def test_identity_tokens_signed_with_the_previous_secret_count_within_the_grace(app, client, world, clock):
    channel = world.objects["A"]["channel"]  # web chat: the site signs its customers' identity tokens
    customer = world.objects["A"]["contact"]
    old = channel.secret
    _rotate(client, channel, world.headers("A", "admin"))
    later = int(START.timestamp()) + 3 * 86400

    def post(secret):
        token = sign_identity(secret, email=customer.email, name="Logged in", exp=later)
        return client.post(f"/widget/{channel.public_key}/messages",
                           json={"body": "hello", "identity": token})

    clock.advance(hours=1)
    first = post(old)
    assert first.status_code == 201, first.get_data(as_text=True)
    conv = first.get_json()["conversation_id"]
    from appliance.web.models.contact_center import Conversation

    assert Conversation.get_by_id(conv).contact_id == customer.id  # vouched for: the real customer
    assert AuditEvent.select().where(AuditEvent.action == "channel.previous_secret_used").count() == 1
    clock.advance(hours=24)
    late = post(old)
    assert late.status_code == 403 and "stopped verifying" in late.get_json()["message"]
    assert Contact.select().where(Contact.tenant == world.tenants["A"].id).count() >= 1


def _key_id(channel_id: int) -> int:
    blob = Channel.select(Channel.secret).where(Channel.id == channel_id).tuples().get()[0]
    return envelope.key_id_of(bytes(blob))


def test_tenant_and_master_key_rotation_cover_the_signing_secret(app, client, world, instance, runner):
    import yaml

    from appliance.cli import main
    from appliance.core.config import write_config

    settings = yaml.safe_load(instance.config_path.read_text())
    write_config(instance.home, {**settings, "crypto_key_cache_seconds": 0.2})  # short rotation settle
    channel = world.objects["A"]["shared_channel"]
    secret, before = channel.secret, _key_id(channel.id)
    home = ["--home", str(instance.home)]
    rotated = runner.invoke(main, [*home, "keys", "rotate-tenant", str(world.tenants["A"].id)])
    assert rotated.exit_code == 0, rotated.output
    assert _key_id(channel.id) != before  # re-sealed under the tenant's new data key
    assert Channel.get_by_id(channel.id).secret == secret
    master = runner.invoke(main, [*home, "keys", "rotate-master", "--yes"])
    assert master.exit_code == 0, master.output
    assert _deliver(client, channel, "after both rotations", secret, "k-1").status_code == 202
    verified = runner.invoke(main, [*home, "keys", "verify"])
    assert verified.exit_code == 0 and "0 failed" in verified.output, verified.output


def test_grace_period_setting_is_bounded():
    ok = {"channels": {"secret_grace_hours": 0}}
    assert problems(ok, DEFAULTS, RULES) == []
    found = problems({"channels": {"secret_grace_hours": 500}}, DEFAULTS, RULES)
    assert found == ["channels.secret_grace_hours: 500 is out of range: use between 0 and 168"]
    assert problems({"channels": {"secret_grace_hours": "a day"}}, DEFAULTS, RULES) == [
        "channels.secret_grace_hours: must be a number, not 'a day'"]


def test_no_grace_when_the_setting_is_zero(app, client, world, monkeypatch):
    monkeypatch.setitem(app.extensions["appliance_instance"]["channels"], "secret_grace_hours", 0)
    channel = world.objects["A"]["shared_channel"]
    old = channel.secret
    answer = _rotate(client, channel, world.headers("A", "admin"))
    assert answer["previous_valid_until"] is None
    assert _deliver(client, channel, "old", old, "z-1").status_code == 401
