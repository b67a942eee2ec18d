"""Encrypted fields: round trip, stored format, AAD binding, tamper detection."""

from __future__ import annotations

import logging
import uuid

import pytest

from appliance.web.crypto import (
    INTEGRITY_FAILED,
    PlaintextRefused,
    get_keyring,
    integrity_listeners,
)
from appliance.web.crypto.envelope import OVERHEAD
from appliance.web.db import database_proxy
from tests.crypto_support import (
    TContact,
    TMessage,
    key_id_of,
    make_instance,
    open_instance,
)


@pytest.fixture
def inst(tmp_path):
    instance = make_instance(tmp_path / "home")
    open_instance(instance)
    yield instance
    database_proxy.close()


def raw(model, pk, column):
    sql = f'SELECT "{column}" FROM "{model._meta.table_name}" WHERE id = ?'
    return bytes(database_proxy.execute_sql(sql, [pk]).fetchone()[0])


def put_raw(model, pk, column, value):
    sql = f'UPDATE "{model._meta.table_name}" SET "{column}" = ? WHERE id = ?'
    database_proxy.execute_sql(sql, [value, pk])


def test_round_trip_all_types(inst):
    m = TMessage.create(tenant=1, body="Привет, card 4111 1111 1111 1111", attachment=b"\x00PDF\xff" * 10,
                        meta={"passport": "AB123", "n": [1, 2.5, None]})
    empty = TMessage.create(tenant=1, body="", attachment=None, meta=None)
    got = TMessage.get_by_id(m.id)
    assert got.body == "Привет, card 4111 1111 1111 1111"
    assert got.attachment == b"\x00PDF\xff" * 10
    assert got.meta == {"passport": "AB123", "n": [1, 2.5, None]}
    e = TMessage.get_by_id(empty.id)
    assert e.body == "" and e.attachment is None and e.meta is None


def test_stored_format_is_raw_bytes_with_version_and_key_id(inst):
    m = TMessage.create(tenant=7, body="hello world")
    blob = raw(TMessage, m.id, "body")
    assert blob[0] == 1
    assert key_id_of(blob) == get_keyring().active(7).key_id
    assert len(blob) == OVERHEAD + len("hello world")
    assert b"hello" not in blob


def test_fresh_nonce_per_value(inst):
    a = TMessage.create(tenant=1, body="same text")
    b = TMessage.create(tenant=1, body="same text")
    a.body = "same text"
    a.save()
    assert len({raw(TMessage, a.id, "body"), raw(TMessage, b.id, "body")}) == 2


def test_ciphertext_moved_to_another_row_fails(inst):
    a = TContact.create(tenant=1, name="Alice")
    b = TContact.create(tenant=1, name="Bob")
    put_raw(TContact, b.id, "name", raw(TContact, a.id, "name"))
    assert TContact.get_by_id(b.id).name is INTEGRITY_FAILED
    assert TContact.get_by_id(a.id).name == "Alice"


def test_ciphertext_moved_to_another_column_fails(inst):
    a = TContact.create(tenant=1, name="Alice", notes="VIP")
    put_raw(TContact, a.id, "notes", raw(TContact, a.id, "name"))
    got = TContact.get_by_id(a.id)
    assert got.notes is INTEGRITY_FAILED
    assert got.name == "Alice"


def test_ciphertext_moved_to_another_tenant_fails(inst):
    a = TContact.create(tenant=1, name="Alice")
    b = TContact.create(tenant=2, name="Mallory")
    # Same row uid too, so only the tenant differs.
    TContact.update(uid=a.uid).where(TContact.id == b.id).execute()
    put_raw(TContact, b.id, "name", raw(TContact, a.id, "name"))
    assert TContact.get_by_id(b.id).name is INTEGRITY_FAILED


def test_uid_change_breaks_binding(inst):
    a = TContact.create(tenant=1, name="Alice")
    TContact.update(uid=uuid.uuid4()).where(TContact.id == a.id).execute()
    assert TContact.get_by_id(a.id).name is INTEGRITY_FAILED


def test_tampered_value_shows_sentinel_for_that_field_and_is_logged_without_data(inst, caplog):
    events = []
    integrity_listeners.append(events.append)
    try:
        c = TContact.create(tenant=1, name="Alice Secret", notes="Card 5500 0000 0000 0004")
        blob = bytearray(raw(TContact, c.id, "notes"))
        blob[-20] ^= 0x01
        put_raw(TContact, c.id, "notes", bytes(blob))
        with caplog.at_level(logging.WARNING, logger="appliance.web.crypto"):
            got = TContact.get_by_id(c.id)
            assert got.notes is INTEGRITY_FAILED
            assert str(got.notes) == "[integrity error]"
            assert got.name == "Alice Secret"
    finally:
        integrity_listeners.remove(events.append)
    assert len(events) == 1 and events[0]["column"] == "notes" and events[0]["row_uid"] == str(c.uid)
    assert "integrity" in caplog.text
    assert "5500" not in caplog.text and "Alice" not in caplog.text


def test_resaving_a_row_with_an_integrity_error_keeps_the_evidence(inst):
    c = TContact.create(tenant=1, name="Alice", notes="x")
    bad = bytearray(raw(TContact, c.id, "notes"))
    bad[-1] ^= 0xFF
    put_raw(TContact, c.id, "notes", bytes(bad))
    got = TContact.get_by_id(c.id)
    got.notes = got.notes  # a form round-tripping the sentinel
    got.name = "Alice B."
    got.save()
    assert raw(TContact, c.id, "notes") == bytes(bad)
    assert TContact.get_by_id(c.id).name == "Alice B."


def test_header_pointing_at_another_key_fails(inst):
    c = TContact.create(tenant=1, name="Alice")
    other = get_keyring().active(2).key_id
    blob = bytearray(raw(TContact, c.id, "name"))
    blob[1:5] = other.to_bytes(4, "big")
    put_raw(TContact, c.id, "name", bytes(blob))
    assert TContact.get_by_id(c.id).name is INTEGRITY_FAILED


def test_plaintext_cannot_be_written_by_query(inst):
    with pytest.raises(PlaintextRefused):
        TContact.update(name="plain").execute()
    with pytest.raises(PlaintextRefused):
        TContact.insert(tenant=1, uid=uuid.uuid4(), name="plain").execute()


def test_bulk_insert_helper(inst):
    rows = TContact.prepare_rows([
        {"tenant": 3, "name": f"n{i}", "phone": f"+4420794600{i:02d}", "email": None} for i in range(50)
    ])
    TContact.insert_many(rows).execute()
    got = {c.name for c in TContact.select().where(TContact.tenant == 3)}
    assert got == {f"n{i}" for i in range(50)}
    assert [c.name for c in TContact.find_by_index(3, "phone", "020 7946 0007")] == ["n7"]


def test_decrypt_raw_for_tuple_queries(inst):
    c = TContact.create(tenant=1, name="Alice")
    tenant, uid, blob = TContact.select(TContact.tenant, TContact.uid, TContact.name).tuples().get()
    assert TContact.decrypt_raw(tenant, "name", uid, blob) == "Alice"
    assert TContact.decrypt_raw(2, "name", uid, blob) is INTEGRITY_FAILED
    assert c.id


def test_decryption_picks_the_key_by_id(inst):
    from appliance.web.crypto.rotation import TenantRotation

    c = TContact.create(tenant=1, name="Alice")
    TenantRotation(1, models=[TContact]).start()  # a second key version, rows not moved yet
    d = TContact.create(tenant=1, name="Dora")
    kr = get_keyring()
    calls = []

    class Counting:
        def __init__(self, aead, key_id):
            self.aead, self.key_id = aead, key_id

        def decrypt(self, *args):
            calls.append(self.key_id)
            return self.aead.decrypt(*args)

    for key in kr._by_id.values():
        key.aead = Counting(key.aead, key.key_id)
    old = TContact.get_by_id(c.id)
    assert TContact.get_by_id(c.id).name == "Alice"
    assert TContact.get_by_id(d.id).name == "Dora"
    # One AEAD open per value, each with the key named in its header: no trial of other keys.
    old_id, new_id = key_id_of(raw(TContact, c.id, "name")), kr.active(1).key_id
    assert old_id != new_id and calls == [old_id, new_id]
    assert old.name == "Alice"


def test_shredding_a_tenants_keys_makes_its_data_unreadable(inst):
    from appliance.web.crypto.keyring import shred_tenant_keys

    a = TContact.create(tenant=1, name="Alice")
    b = TContact.create(tenant=2, name="Bob")
    assert shred_tenant_keys(1) == 1  # its data key (no index key yet: no phone or e-mail stored)
    assert TContact.get_by_id(a.id).name is INTEGRITY_FAILED
    assert TContact.get_by_id(b.id).name == "Bob"
