"""Master key: creation, sources, wrong/missing key refused, recovery kit, master rotation."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from appliance.web.crypto import (
    MasterKeyError,
    ensure_master_key,
    key_file_path,
    load_master_key,
    master,
)
from appliance.web.crypto.master import (
    encode_key_file,
    export_recovery_kit,
    generate_key,
    open_recovery_kit,
)
from appliance.web.crypto.master_rotation import rotate_master
from appliance.web.crypto.tables import CryptoMaster, TenantKey
from appliance.web.db import database_proxy
from tests.crypto_support import TContact, make_instance, open_instance


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch):
    monkeypatch.setattr(master, "SCRYPT_N", 2**12)


def _db_files(instance):
    db = instance.home / "appliance.db"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (db, db.with_name("appliance.db-wal")) if p.exists()}


def test_ensure_master_key_creates_once_with_0600(tmp_path):
    instance = make_instance(tmp_path / "h", create_key=False)
    path = key_file_path(instance)
    assert ensure_master_key(instance) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()
    assert ensure_master_key(instance) is False
    assert path.read_bytes() == before
    assert len(load_master_key(instance).key) == 32


def test_missing_key_file_is_a_clear_error(tmp_path):
    instance = make_instance(tmp_path / "h", create_key=False)
    with pytest.raises(MasterKeyError) as err:
        open_instance(instance)
    msg = str(err.value)
    assert str(key_file_path(instance)) in msg and "init" in msg and "import-recovery" in msg


def test_group_readable_key_file_refused(tmp_path):
    instance = make_instance(tmp_path / "h")
    os.chmod(key_file_path(instance), 0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(instance)


def test_wrong_master_key_refused_and_nothing_written(tmp_path):
    instance = make_instance(tmp_path / "h")
    open_instance(instance)
    TContact.create(tenant=1, name="Alice", phone="+44 20 7946 0000")
    database_proxy.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    database_proxy.close()
    recorded = CryptoMaster.select().get().master_key_id
    database_proxy.close()
    before = _db_files(instance)
    key_file_path(instance).write_bytes(encode_key_file(generate_key()))
    with pytest.raises(MasterKeyError) as err:
        open_instance(instance)
    msg = str(err.value)
    assert str(key_file_path(instance)) in msg and recorded in msg and "Nothing was read or written" in msg
    database_proxy.close()
    assert _db_files(instance) == before


def test_wrapped_keys_are_bound_to_their_row(tmp_path):
    instance = make_instance(tmp_path / "h")
    kr = open_instance(instance)
    a, b = kr.active(1), kr.active(2)
    wa = TenantKey.get(TenantKey.key_id == a.key_id).wrapped
    TenantKey.update(wrapped=wa).where(TenantKey.key_id == b.key_id).execute()
    fresh = open_instance(instance)
    with pytest.raises(MasterKeyError, match="cannot be unwrapped"):
        fresh.get(b.key_id)


def test_env_key_source(tmp_path, monkeypatch):
    instance = make_instance(tmp_path / "h", create_key=False)
    key = generate_key()
    monkeypatch.setenv("APPLIANCE_MASTER_KEY", base64.b64encode(key).decode())
    assert ensure_master_key(instance) is False
    assert not key_file_path(instance).exists()
    kr = open_instance(instance)
    assert kr.master.key == key and kr.master.source == "env"
    TContact.create(tenant=1, name="x")
    monkeypatch.setenv("APPLIANCE_MASTER_KEY", base64.b64encode(generate_key()).decode())
    with pytest.raises(MasterKeyError, match="APPLIANCE_MASTER_KEY"):
        open_instance(instance)


def test_passphrase_source(tmp_path, monkeypatch):
    instance = make_instance(tmp_path / "h", {"master_key_source": "passphrase"}, create_key=False)
    assert ensure_master_key(instance) is True  # the salt file
    with pytest.raises(MasterKeyError, match="APPLIANCE_MASTER_PASSPHRASE"):
        load_master_key(instance)
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "correct horse battery staple")
    open_instance(instance)
    c = TContact.create(tenant=1, name="Alice")
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "wrong horse battery staple")
    with pytest.raises(MasterKeyError):
        open_instance(instance)
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "correct horse battery staple")
    open_instance(instance)
    assert TContact.get_by_id(c.id).name == "Alice"


def test_recovery_kit_round_trip(tmp_path):
    instance = make_instance(tmp_path / "h")
    key = load_master_key(instance)
    kit = export_recovery_kit(key, "a long recovery passphrase", label="site A")
    assert "BEGIN APPLIANCE MASTER KEY RECOVERY KIT" in kit and key.key_id in kit
    assert base64.b64encode(key.key).decode() not in kit
    assert open_recovery_kit(kit, "a long recovery passphrase") == key.key
    with pytest.raises(MasterKeyError, match="passphrase"):
        open_recovery_kit(kit, "the wrong passphrase!!")
    edited = kit.replace("site A", "site B")
    with pytest.raises(MasterKeyError):
        open_recovery_kit(edited, "a long recovery passphrase")
    with pytest.raises(ValueError):
        export_recovery_kit(key, "short")


def test_rotate_master_rewraps_and_old_key_is_refused(tmp_path):
    instance = make_instance(tmp_path / "h")
    kr = open_instance(instance)
    c = TContact.create(tenant=1, name="Alice", email="a@example.com")
    TContact.create(tenant=2, name="Bob")
    old_key = kr.master
    wrapped_before = {k.key_id: bytes(k.wrapped) for k in TenantKey.select()}
    new = rotate_master(instance, keyring=kr)
    assert new.key_id != old_key.key_id
    assert CryptoMaster.get().master_key_id == new.key_id
    assert all(bytes(k.wrapped) != wrapped_before[k.key_id] for k in TenantKey.select())
    retired = instance.home / "keys" / "retired" / f"master-{old_key.key_id}.key"
    assert retired.exists() and stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert not (instance.home / "keys" / "master.key.new").exists()
    fresh = open_instance(instance)
    assert fresh.master.key_id == new.key_id
    assert TContact.get_by_id(c.id).name == "Alice"
    key_file_path(instance).write_bytes(encode_key_file(old_key.key))
    with pytest.raises(MasterKeyError):
        open_instance(instance)


def _rotate_with_a_power_cut_after_commit(monkeypatch, instance, kr, **kwargs):
    from appliance.web.crypto import master_rotation

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut after commit")

    with monkeypatch.context() as m:
        m.setattr(master_rotation, "promote", crash)
        with pytest.raises(KeyboardInterrupt):
            rotate_master(instance, keyring=kr, **kwargs)


def _passphrase_instance(tmp_path, monkeypatch):
    instance = make_instance(tmp_path / "h", {"master_key_source": "passphrase"}, create_key=False)
    ensure_master_key(instance)
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "the first passphrase")
    return instance, open_instance(instance)


def test_interrupted_master_rotation_heals_at_next_start(tmp_path, monkeypatch):
    instance = make_instance(tmp_path / "h")
    kr = open_instance(instance)
    c = TContact.create(tenant=1, name="Alice")
    _rotate_with_a_power_cut_after_commit(monkeypatch, instance, kr)
    assert (instance.home / "keys" / "master.key.new").exists()
    fresh = open_instance(instance)
    assert fresh.master.key_id == CryptoMaster.get().master_key_id
    assert TContact.get_by_id(c.id).name == "Alice"
    assert not (instance.home / "keys" / "master.key.new").exists()


def test_a_process_started_before_a_master_rotation_follows_it(tmp_path):
    instance = make_instance(tmp_path / "h")
    stale = open_instance(instance)
    TContact.create(tenant=1, name="Alice")
    other = open_instance(instance)
    rotate_master(instance, keyring=other)
    # A key created by the process that still holds the old master key is wrapped
    # under the new one (it follows the rotation first), so everyone can read it.
    created = stale.active(2)
    assert stale.master.key_id == CryptoMaster.get().master_key_id
    fresh = open_instance(instance)
    assert fresh.get(created.key_id).aead is not None


def test_rotate_master_with_a_passphrase(tmp_path, monkeypatch):
    instance, kr = _passphrase_instance(tmp_path, monkeypatch)
    c = TContact.create(tenant=1, name="Alice")
    rotate_master(instance, keyring=kr, new_passphrase="the second passphrase")
    with pytest.raises(MasterKeyError):
        open_instance(instance)
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "the second passphrase")
    open_instance(instance)
    assert TContact.get_by_id(c.id).name == "Alice"


def test_interrupted_passphrase_rotation_heals_with_the_new_passphrase(tmp_path, monkeypatch):
    instance, kr = _passphrase_instance(tmp_path, monkeypatch)
    c = TContact.create(tenant=1, name="Alice")
    _rotate_with_a_power_cut_after_commit(monkeypatch, instance, kr, new_passphrase="the second passphrase")
    salt = instance.home / "keys" / "master.salt"
    assert (salt.parent / "master.salt.new").exists()
    with pytest.raises(MasterKeyError, match=r"master\.salt\.new, which is left from a passphrase rotation"):
        open_instance(instance)  # the old passphrase no longer opens the database
    monkeypatch.setenv("APPLIANCE_MASTER_PASSPHRASE", "the second passphrase")
    healed = open_instance(instance)
    assert "finished a master key rotation" in healed.recovery_note
    assert not (salt.parent / "master.salt.new").exists()
    assert TContact.get_by_id(c.id).name == "Alice"
    assert open_instance(instance).recovery_note is None


def test_a_rotation_started_before_another_finished_changes_nothing(tmp_path):
    instance = make_instance(tmp_path / "h")
    first, second = open_instance(instance), open_instance(instance)  # two hosts' commands
    TContact.create(tenant=1, name="Alice")
    rotate_master(instance, keyring=first)
    wrapped = {k.key_id: bytes(k.wrapped) for k in TenantKey.select()}
    with pytest.raises(MasterKeyError, match="rotated meanwhile"):
        rotate_master(instance, keyring=second)
    assert {k.key_id: bytes(k.wrapped) for k in TenantKey.select()} == wrapped
    assert CryptoMaster.get().master_key_id == first.master.key_id
