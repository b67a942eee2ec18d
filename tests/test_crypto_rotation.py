"""Tenant key rotation: correctness, resumability, rotation under concurrent writes, verify."""

from __future__ import annotations

import random
import threading
import time

import pytest

from appliance.web.crypto import get_keyring
from appliance.web.crypto.admin import verify_all
from appliance.web.crypto.rotation import rotate_tenant
from appliance.web.crypto.tables import KeyRotationJob, TenantKey
from appliance.web.db import database_proxy
from tests.crypto_support import (
    TContact,
    TMessage,
    key_id_of,
    make_instance,
    open_instance,
)

MODELS = [TContact, TMessage]


@pytest.fixture(params=["sqlite", "postgres"])
def inst(request, tmp_path):
    settings = {}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("pg_url")
    instance = make_instance(tmp_path / "home", settings)
    open_instance(instance)
    yield instance
    database_proxy.close()


def write_txn():
    # IMMEDIATE on SQLite, as the app's write transactions should be: a deferred one that
    # reads first fails at once if another writer committed meanwhile.
    from appliance.web.crypto.rotation import write_transaction

    return write_transaction()


def seed(tenant, n, conversation=0):
    rows = TMessage.prepare_rows([{"tenant": tenant, "conversation": conversation, "body": f"t{tenant} body {i}",
                                   "meta": {"i": i}, "attachment": b"%d" % i if i % 3 == 0 else None}
                                  for i in range(n)])
    with database_proxy.atomic():
        for i in range(0, n, 500):
            TMessage.insert_many(rows[i:i + 500]).execute()


def tamper(pk, column="body"):
    p = database_proxy.param
    (blob,) = database_proxy.execute_sql(f"SELECT {column} FROM tcrypto_message WHERE id = {p}", [pk]).fetchone()
    blob = bytearray(blob)
    blob[-3] ^= 0x40
    database_proxy.execute_sql(f"UPDATE tcrypto_message SET {column} = {p} WHERE id = {p}", [bytes(blob), pk])


def key_ids(model, tenant, column):
    return {key_id_of(v) for (v,) in model.select(getattr(model, column)).where(
        (model.tenant == tenant) & getattr(model, column).is_null(False)).tuples()}


def test_rotation_moves_every_row_and_retires_the_old_key(inst):
    seed(1, 1200)
    seed(2, 100)
    TContact.create(tenant=1, name="Alice", phone="+44 20 7946 0958")
    kr = get_keyring()
    old1, old2 = kr.active(1).key_id, kr.active(2).key_id
    ticks = []
    result = rotate_tenant(1, batch_size=250, progress_cb=ticks.append, models=MODELS)
    new1 = result.new_key_id
    assert result.retired and result.remaining == 0 and result.old_key_ids == [old1]
    assert result.rows_rewritten == 1201 and sum(ticks) == 1201
    assert key_ids(TMessage, 1, "body") == {new1} and key_ids(TMessage, 1, "meta") == {new1}
    assert key_ids(TMessage, 1, "attachment") == {new1} and key_ids(TContact, 1, "name") == {new1}
    assert key_ids(TMessage, 2, "body") == {old2}  # other tenants untouched
    assert TenantKey.get(TenantKey.key_id == old1).status == "retired"
    assert TenantKey.get(TenantKey.key_id == new1).status == "active" and kr.active(1).key_id == new1
    bodies = {m.body for m in TMessage.select().where(TMessage.tenant == 1)}
    assert bodies == {f"t1 body {i}" for i in range(1200)}
    assert TContact.find_by_index(1, "phone", "020 7946 0958")[0].name == "Alice"  # index key unchanged
    assert verify_all(MODELS).ok


def test_rotation_resumes_after_a_crash(inst):
    seed(1, 1000)
    kr = get_keyring()
    old = kr.active(1).key_id
    batches = []

    def crash_after_two(n):
        batches.append(n)
        if len(batches) == 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        rotate_tenant(1, batch_size=100, progress_cb=crash_after_two, models=MODELS)
    job = KeyRotationJob.get()
    assert job.state == "running" and job.rows_done == 200
    moved = key_ids(TMessage, 1, "body")
    assert moved == {old, job.new_key_id}
    # While interrupted, the app writes with the new key and still reads the old rows.
    fresh = TMessage.create(tenant=1, body="written mid-rotation")
    assert key_ids(TMessage, 1, "body") - {old} == {job.new_key_id}
    assert TMessage.get(TMessage.tenant == 1).body.startswith("t1 body")
    result = rotate_tenant(1, batch_size=100, models=MODELS)
    assert result.resumed and result.new_key_id == job.new_key_id
    assert result.rows_rewritten == 1000  # 200 before the crash + 800 after, none twice
    assert key_ids(TMessage, 1, "body") == {job.new_key_id}
    assert TenantKey.select().where((TenantKey.tenant_id == 1) & (TenantKey.purpose == "data")).count() == 2
    assert KeyRotationJob.get().state == "done"
    assert TMessage.get_by_id(fresh.id).body == "written mid-rotation"


def test_rotation_under_concurrent_writes(inst):
    """Must-show: rotate while another thread inserts and edits; nothing is left on the old key."""
    seed(1, 3000)
    kr = get_keyring()
    old = kr.active(1).key_id
    expected: dict[int, str] = {}
    stop = threading.Event()
    writes = {"during": 0}
    rotating = threading.Event()
    errors = []

    def writer():
        rng = random.Random(7)
        try:
            while not stop.is_set():
                with write_txn():
                    m = TMessage.create(tenant=1, body=f"new {len(expected)}", meta={"w": 1})
                    expected[m.id] = m.body
                    target = TMessage.get_by_id(rng.randint(1, 3000))
                    target.body = f"edited {rng.random()}"
                    target.save()
                    expected[target.id] = target.body
                if rotating.is_set():
                    writes["during"] += 1
                time.sleep(0.001)
        except Exception as exc:  # any writer failure fails the test below
            errors.append(exc)
        finally:
            database_proxy.close()

    def slow_progress(n):
        rotating.set()
        time.sleep(0.01)  # give the writer room between batches

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        result = rotate_tenant(1, batch_size=200, progress_cb=slow_progress, models=MODELS)
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert writes["during"] > 20, "the writer must actually run during the rotation"
    assert result.retired and result.remaining == 0
    new = result.new_key_id
    for column in ("body", "meta", "attachment"):
        assert key_ids(TMessage, 1, column) <= {new}
    assert old not in key_ids(TMessage, 1, "body")
    assert TenantKey.get(TenantKey.key_id == old).status == "retired"
    # Every row decrypts, and no concurrent edit was overwritten by the rotation.
    rows = {m.id: m.body for m in TMessage.select().where(TMessage.tenant == 1)}
    for pk, body in expected.items():
        assert rows[pk] == body
    assert verify_all(MODELS).ok


def test_verify_reports_every_failure_and_continues(inst):
    seed(1, 300)
    for pk in (10, 200):
        tamper(pk)
    report = verify_all(MODELS)
    assert report.rows_checked == 300
    assert report.values_checked == 300 + 300 + 100
    assert sorted(f["pk"] for f in report.failures) == [10, 200]
    assert {f["column"] for f in report.failures} == {"body"}


def test_rotation_with_tampered_rows_keeps_the_old_key(inst):
    seed(1, 50)
    tamper(5)
    old = get_keyring().active(1).key_id
    result = rotate_tenant(1, models=MODELS, settle=False)
    assert not result.retired and result.remaining == 1 and result.failures >= 1
    assert TenantKey.get(TenantKey.key_id == old).status == "retiring"
    assert any("verify" in n for n in result.notes)


def test_a_crash_inside_a_batch_write_loses_nothing_and_the_resume_counts_every_row(inst, monkeypatch):
    # PostgreSQL writes a batch as several transactions: killed inside the second, the first
    # stays committed (its rows under the new key, counted), the second rolls back whole.
    from appliance.web.crypto.rotation import TenantRotation

    seed(1, 400)
    calls = []
    real = TenantRotation._record

    def dying(self, t, rows, last):
        calls.append(rows)
        real(self, t, rows, last)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(TenantRotation, "_record", dying)
    with pytest.raises(KeyboardInterrupt):
        rotate_tenant(1, batch_size=200, models=MODELS)
    monkeypatch.setattr(TenantRotation, "_record", real)
    job = KeyRotationJob.get()
    assert job.state == "running" and job.rows_done == calls[0] > 0
    p = database_proxy.param
    bodies = database_proxy.execute_sql(f"SELECT body FROM tcrypto_message WHERE tenant = {p}", [1]).fetchall()
    assert sum(key_id_of(bytes(b)) == job.new_key_id for (b,) in bodies) == calls[0]
    result = rotate_tenant(1, batch_size=200, models=MODELS)
    assert result.resumed and result.rows_rewritten == 400
    assert key_ids(TMessage, 1, "body") == {job.new_key_id}
    assert {m.body for m in TMessage.select().where(TMessage.tenant == 1)} == {f"t1 body {i}" for i in range(400)}
