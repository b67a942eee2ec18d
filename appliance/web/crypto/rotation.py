"""Online tenant key rotation: re-encrypt a tenant's rows under a new data key.

Master key rotation (re-wrapping the data keys) is in master_rotation.py.

Tenant rotation, while the app keeps serving:

1. a new data-key version becomes *active*, the old ones *retiring* (they
   still decrypt); every process picks up the new key within the key ring's
   ``active_ttl``, and ``EncryptedModel.save`` moves any row it rewrites;
2. rows still under an old key are re-encrypted in primary-key order, in
   batches, one transaction each; the batch's last key is recorded in the
   job row, so a crashed run resumes where it stopped with the same new key;
   an update only lands if the row's ciphertext is still the one that was
   read, so a concurrent edit is never overwritten with older content;
3. after ``active_ttl`` has passed since activation (no process can still be
   writing with an old key), sweeps repeat until nothing is left under the
   old keys; only then are they marked *retired*.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from os import urandom as _urandom

from cryptography.exceptions import InvalidTag

from appliance.core import clock
from appliance.web.crypto import envelope
from appliance.web.crypto.fields import registered_models
from appliance.web.crypto.keyring import DATA, KeyRing, get_keyring
from appliance.web.crypto.tables import KeyRotationJob, TenantKey
from appliance.web.db import database_proxy, is_postgres

log = logging.getLogger("appliance.web.crypto")

# Transactions a PostgreSQL batch is written in (see TenantRotation._write).
_PG_PARTS = 4


def _now():
    return clock.naive_now()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def encrypted_tables(models=None) -> list[type]:
    """Models with encrypted columns whose tables exist in the bound database (one per table)."""
    models = registered_models() if models is None else models
    existing = set(database_proxy.get_tables())
    out, seen = [], set()
    for model in models:
        table = model._meta.table_name
        if table in existing and table not in seen:
            seen.add(table)
            out.append(model)
    return out


class _TableSQL:
    """Raw SQL for one model: the batch loops must not pay peewee's per-row cost."""

    def __init__(self, model):
        spec = model._crypto_spec()
        self.model = model
        self.spec = spec
        self.table = spec.table
        self.pk = model._meta.primary_key.column_name
        self.columns = [f.column_name for f in spec.encrypted]
        self.prefixes = {}
        p = database_proxy.param
        self.p = p
        cols = ", ".join(_q(c) for c in self.columns)
        uid = _q(spec.uid_field.column_name)
        if is_postgres():
            uid = f"uuid_send({uid})"  # its 16 bytes, not a str parsed into a UUID per row
        self.select_head = (f"SELECT {_q(self.pk)}, {uid}, {cols} "
                            f"FROM {_q(self.table)} WHERE {_q(spec.tenant_field.column_name)} = {p} "
                            f"AND {_q(self.pk)} > {p}")
        same = "IS NOT DISTINCT FROM" if is_postgres() else "IS"
        sets = ", ".join(f"{_q(c)} = {p}" for c in self.columns)
        guards = " AND ".join(f"{_q(c)} {same} {p}" for c in self.columns)
        self.update_sql = f"UPDATE {_q(self.table)} SET {sets} WHERE {_q(self.pk)} = {p} AND {guards}"
        # PostgreSQL: a batch as one UPDATE joined to the batch's arrays, not a statement
        # per row (each a round trip and a plan), nor a VALUES list (formatted row by row
        # in Python): the same guards, one array per column of the rows' values.
        n = len(self.columns)
        news, olds = [f"n{i}" for i in range(n)], [f"o{i}" for i in range(n)]
        assign = ", ".join(f"{_q(c)} = v.{news[i]}" for i, c in enumerate(self.columns))
        arrays = ", ".join([f"{p}::bytea[]"] * n + [f"{p}::bigint[]"] + [f"{p}::bytea[]"] * n)
        self.array_sql = (
            f"UPDATE {_q(self.table)} AS t SET {assign}"
            f" FROM unnest({arrays}) AS v({', '.join(news)}, pk, {', '.join(olds)}) WHERE t.{_q(self.pk)} = v.pk"
            # The batch's key range, so the table is read through its primary key, not scanned.
            f" AND t.{_q(self.pk)} BETWEEN {p} AND {p} AND "
            + " AND ".join(f"t.{_q(c)} IS NOT DISTINCT FROM v.{olds[i]}" for i, c in enumerate(self.columns)))

    def key_filter(self, op: str, key_ids: list[int]) -> tuple[str, list]:
        """SQL selecting rows where any column's key id (bytes 2-5) is / is not among key_ids."""
        p = self.p
        ids = [envelope.HEADER.pack(envelope.FORMAT_V1, k)[1:] for k in key_ids]
        marks = ", ".join([p] * len(ids))
        parts, params = [], []
        for c in self.columns:
            parts.append(f"({_q(c)} IS NOT NULL AND substr({_q(c)}, 2, 4) {op} ({marks}))")
            params.extend(ids)
        return "(" + " OR ".join(parts) + ")", params

    def prefix(self, tenant_id, column):
        return self.spec.prefix(tenant_id, column)


def write_transaction():
    """A transaction that takes SQLite's write lock up front.

    A deferred SQLite transaction that reads and then writes fails at once
    with "database is locked" if another connection committed in between (no
    busy wait is possible for a stale snapshot); IMMEDIATE waits its turn.
    """
    if is_postgres():
        return database_proxy.atomic()
    return database_proxy.atomic("IMMEDIATE")


def _executemany(sql: str, rows: list) -> None:
    cursor = database_proxy.cursor()
    if is_postgres():
        from psycopg2.extras import execute_batch

        execute_batch(cursor, sql, rows, page_size=500)
    else:
        cursor.executemany(sql, rows)


@dataclass
class RotationResult:
    tenant_id: int
    new_key_id: int
    old_key_ids: list[int]
    rows_rewritten: int = 0
    failures: int = 0
    remaining: int = 0
    retired: bool = False
    resumed: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class TenantRotation:
    """One tenant's rotation; ``start()`` then ``pending()`` (for a progress bar) then ``run()``."""

    def __init__(self, tenant_id: int, models=None, batch_size: int = 2000, keyring: KeyRing | None = None):
        self.tenant_id = tenant_id
        self.keyring = keyring or get_keyring()
        self.batch_size = batch_size
        self.tables = [_TableSQL(m) for m in encrypted_tables(models)]
        self.job: KeyRotationJob | None = None
        self.result: RotationResult | None = None

    def start(self) -> RotationResult:
        kr = self.keyring
        kr.verify_master()
        with write_transaction():
            job = (KeyRotationJob.select()
                   .where((KeyRotationJob.tenant_id == self.tenant_id) & (KeyRotationJob.state == "running"))
                   .order_by(KeyRotationJob.id.desc()).first())
            resumed = job is not None
            if job is None:
                old = [k.key_id for k in TenantKey.select(TenantKey.key_id).where(
                    (TenantKey.tenant_id == self.tenant_id) & (TenantKey.purpose == DATA)
                    & (TenantKey.status.in_(["active", "retiring"])))]
                new = kr.create_key(self.tenant_id, DATA, status="active")
                if old:
                    TenantKey.update(status="retiring").where(TenantKey.key_id.in_(old)).execute()
                job = KeyRotationJob.create(tenant_id=self.tenant_id, new_key_id=new.key_id,
                                            old_key_ids=json.dumps(old), activated_at=_now())
        kr.invalidate(self.tenant_id)
        self.job = job
        self.result = RotationResult(self.tenant_id, job.new_key_id, json.loads(job.old_key_ids),
                                     rows_rewritten=job.rows_done, resumed=resumed)
        return self.result

    def pending(self) -> int:
        """Rows (across tables) not yet under the new key."""
        total = 0
        for t in self.tables:
            where, params = t.key_filter("NOT IN", [self.job.new_key_id])
            sql = (f"SELECT COUNT(*) FROM {_q(t.table)} WHERE "
                   f"{_q(t.spec.tenant_field.column_name)} = {t.p} AND {where}")
            total += database_proxy.execute_sql(sql, [self.tenant_id, *params]).fetchone()[0]
        return total

    def _remaining_old(self) -> int:
        old = json.loads(self.job.old_key_ids)
        if not old:
            return 0
        total = 0
        for t in self.tables:
            where, params = t.key_filter("IN", old)
            sql = (f"SELECT COUNT(*) FROM {_q(t.table)} WHERE "
                   f"{_q(t.spec.tenant_field.column_name)} = {t.p} AND {where}")
            total += database_proxy.execute_sql(sql, [self.tenant_id, *params]).fetchone()[0]
        return total

    def _pass(self, t: _TableSQL, start_pk, progress_cb, record: bool) -> int:
        """Re-encrypt every row of one table not under the new key, from ``start_pk`` on."""
        new_id = self.job.new_key_id
        where, fparams = t.key_filter("NOT IN", [new_id])
        sql = f"{t.select_head} AND {where} ORDER BY {_q(t.pk)} LIMIT {int(self.batch_size)}"
        reseal = self._resealer(t)
        changed_total = 0
        last = start_pk
        while True:
            rows = database_proxy.execute_sql(sql, [self.tenant_id, last, *fparams]).fetchall()
            if not rows:
                break
            updates = reseal(rows)
            last = rows[-1][0]
            self._write(t, updates, last, record)
            changed_total += len(updates)
            self.result.rows_rewritten += len(updates)
            if progress_cb is not None:
                progress_cb(len(rows))
            if len(rows) < self.batch_size:
                break
        return changed_total

    def _resealer(self, t: _TableSQL):
        """A function turning a batch's selected rows into (new values..., pk, old values...) tuples."""
        kr = self.keyring
        tenant_id = self.tenant_id
        new = kr.get(self.job.new_key_id)
        prefixes = [t.prefix(tenant_id, c) for c in t.columns]
        columns = range(len(t.columns))
        by_header = kr._by_header
        new_header, encrypt = new.header, new.aead.encrypt
        header_len, nonce_end = envelope.HEADER_LEN, envelope.HEADER_LEN + envelope.NONCE_LEN
        postgres = is_postgres()

        def reseal(rows):
            # One urandom call per batch, sliced into 96-bit nonces: a fresh random nonce per
            # value as before, without a system call per value.
            nonces = _urandom(envelope.NONCE_LEN * len(rows) * len(prefixes))
            used = 0
            updates = []
            for row in rows:
                raw_uid = row[1]
                # PostgreSQL hands the uid over as its 16 bytes (uuid_send); SQLite keeps a
                # UUIDField as 32 hex digits.
                if postgres:
                    uid = bytes(raw_uid)
                else:
                    uid = bytes.fromhex(raw_uid) if type(raw_uid) is str and len(raw_uid) == 32 \
                        else envelope.uid_bytes(raw_uid)
                values = row[2:]
                new_values = list(values)
                changed = False
                for i in columns:
                    blob = values[i]
                    if blob is None:
                        continue
                    header = bytes(blob[:header_len])
                    if header == new_header:
                        continue
                    aad = prefixes[i] + uid
                    try:
                        key = by_header.get(header) or kr.get(envelope.key_id_of(bytes(blob)))
                        if key.tenant_id != tenant_id or key.purpose != DATA:
                            raise envelope.DecryptionFailed("value names another tenant's key", key.key_id)
                        try:
                            plain = key.aead.decrypt(blob[header_len:nonce_end], blob[nonce_end:], header + aad)
                        except InvalidTag:
                            raise envelope.DecryptionFailed("authentication failed", key.key_id) from None
                    except envelope.DecryptionFailed as exc:
                        self.result.failures += 1
                        log.warning("rotation: value failed its integrity check: table=%s column=%s "
                                    "row_pk=%s reason=%s", t.table, t.columns[i], row[0], exc.reason)
                        continue
                    nonce = nonces[used:used + envelope.NONCE_LEN]
                    used += envelope.NONCE_LEN
                    new_values[i] = new_header + nonce + encrypt(nonce, plain, new_header + aad)
                    changed = True
                if changed:
                    updates.append((*new_values, row[0], *values))
            return updates

        return reseal

    def _write(self, t: _TableSQL, updates: list, last, record: bool) -> None:
        """Store one batch's new values and, with ``record``, the job's progress."""
        if not is_postgres():
            with write_transaction():
                if updates:
                    _executemany(t.update_sql, updates)
                if record:
                    self._record(t, len(updates), last)
            return
        # PostgreSQL writes a new version of every updated row. On a full page it goes to
        # another page, with a new entry in each of the table's indexes (7 on message, 14 on
        # conversation): most of a rotation's time. So the batch is written as _PG_PARTS
        # interleaved slices, each its own transaction: the first moves every
        # _PG_PARTS-th row off its page; once committed, its old versions are dead and
        # pruned when the next slice reads the page, which then has room for that slice's
        # rows on the same page, a heap-only update that touches no index (4-5x cheaper).
        # Each slice is the same guarded UPDATE, so a crash between slices leaves only
        # rows fully under one key or the other; the batch's end is recorded with the
        # last slice, and a resumed run skips the rows already moved (the key filter).
        parts = [updates[i::_PG_PARTS] for i in range(_PG_PARTS)] if len(updates) >= _PG_PARTS else [updates]
        for n, part in enumerate(parts):
            with write_transaction():
                if part:
                    columns = [list(column) for column in zip(*part, strict=True)]
                    keys = columns[len(t.columns)]
                    database_proxy.execute_sql(t.array_sql, [*columns, min(keys), max(keys)])
                if record:
                    self._record(t, len(part), last if n == len(parts) - 1 else None)

    def _record(self, t: _TableSQL, rows: int, last) -> None:
        if last is not None:
            progress = json.loads(self.job.progress)
            progress[t.table] = last
            self.job.progress = json.dumps(progress)
        self.job.rows_done += rows
        self.job.failures = self.result.failures
        self.job.save(only=[KeyRotationJob.progress, KeyRotationJob.rows_done, KeyRotationJob.failures])

    def run(self, progress_cb=None, settle: bool = True) -> RotationResult:
        if self.job is None:
            self.start()
        began = time.monotonic()
        progress = json.loads(self.job.progress)
        for t in self.tables:
            self._pass(t, progress.get(t.table, 0), progress_cb, record=True)
        # Until active_ttl has passed since activation, another process may still
        # hold the old key as its active one; after it, nobody writes with it.
        if settle:
            activated = self.job.activated_at
            age = (_now() - activated).total_seconds()
            wait = self.keyring.active_ttl + 0.25 - age
            if wait > 0:
                time.sleep(wait)
        for _ in range(5):
            swept = sum(self._pass(t, 0, None, record=False) for t in self.tables)
            if swept == 0:
                break
            self.result.notes.append(f"sweep moved {swept} rows written during the rotation")
        self.result.remaining = self._remaining_old()
        if self.result.remaining == 0:
            old = json.loads(self.job.old_key_ids)
            with write_transaction():
                if old:
                    TenantKey.update(status="retired", retired_at=_now()).where(
                        TenantKey.key_id.in_(old)).execute()
                self.job.state = "done"
                self.job.finished_at = _now()
                self.job.failures = self.result.failures
                self.job.save()
            self.result.retired = True
            self.keyring.invalidate(self.tenant_id)
        else:
            self.result.notes.append(
                f"{self.result.remaining} rows still use an old key ({self.result.failures} values "
                f"failed their integrity check); the old key stays usable. Run 'appliance keys "
                f"verify', then run the rotation again to finish."
            )
        self.result.seconds = time.monotonic() - began
        return self.result


def rotate_tenant(tenant_id: int, batch_size: int = 2000, progress_cb=None, models=None,
                  keyring: KeyRing | None = None, settle: bool = True) -> RotationResult:
    """Rotate one tenant's data key online (resumes an interrupted rotation of that tenant)."""
    rotation = TenantRotation(tenant_id, models=models, batch_size=batch_size, keyring=keyring)
    rotation.start()
    return rotation.run(progress_cb=progress_cb, settle=settle)


def tenants_with_keys() -> list[int]:
    return sorted({k.tenant_id for k in TenantKey.select(TenantKey.tenant_id).where(TenantKey.purpose == DATA)})
