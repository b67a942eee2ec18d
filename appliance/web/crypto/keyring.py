"""Per-tenant data keys, wrapped by the master key, cached unwrapped in memory.

A process holds one ``KeyRing``. It unwraps each data key at most once and
keeps one AESGCM object per key id, so encrypting a field costs a dict lookup
and one AEAD call. The *active* key of a tenant is cached only for
``active_ttl`` seconds: a rotation run by another process (``appliance keys
rotate-tenant``) is picked up by every web and worker process within that
time, and the rotation waits that long before its final sweep.

A master key rotation by another process (master_rotation.py) is followed the same
way without a restart: a data key that does not unwrap makes the ring compare its
master key id with the database's and, if the database names another key, load that
key from this host's key files (``reload``) and unwrap again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from peewee import IntegrityError, fn

from appliance.core import clock
from appliance.web.crypto import envelope
from appliance.web.crypto.master import MasterKey, MasterKeyError
from appliance.web.crypto.tables import CryptoMaster, TenantKey
from appliance.web.db import is_postgres, write_transaction

log = logging.getLogger("appliance.web.crypto")

DATA = "data"
INDEX = "index"


class KeyUnavailable(envelope.DecryptionFailed):
    """A value names a key id this installation does not have (shredded or foreign)."""


class DataKey:
    __slots__ = ("aead", "header", "hmac", "key_id", "purpose", "raw", "status", "tenant_id", "version")

    def __init__(self, key_id, tenant_id, purpose, version, status, raw: bytes):
        self.key_id = key_id
        self.tenant_id = tenant_id
        self.purpose = purpose
        self.version = version
        self.status = status
        self.aead = AESGCM(raw)
        self.header = envelope.HEADER.pack(envelope.FORMAT_V1, key_id)  # how values name this key
        # Only index keys need the key afterwards: a keyed HMAC state to copy per index
        # value (copying is ~3x cheaper than keying a new HMAC each time).
        self.raw = raw if purpose == INDEX else None
        self.hmac = hmac.new(raw, digestmod=hashlib.sha256) if purpose == INDEX else None

    def __repr__(self):
        return f"<DataKey {self.key_id} tenant={self.tenant_id} {self.purpose} v{self.version}>"


def wrap_aad(tenant_id: int, key_id: int, version: int, purpose: str) -> bytes:
    return f"appliance-dek-v1\x1f{tenant_id}\x1f{key_id}\x1f{version}\x1f{purpose}".encode()


def wrap_key(master_aead: AESGCM, raw: bytes, tenant_id, key_id, version, purpose) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + master_aead.encrypt(nonce, raw, wrap_aad(tenant_id, key_id, version, purpose))


def unwrap_key(master_aead: AESGCM, wrapped: bytes, tenant_id, key_id, version, purpose) -> bytes:
    wrapped = bytes(wrapped)
    return master_aead.decrypt(wrapped[:12], wrapped[12:],
                               wrap_aad(tenant_id, key_id, version, purpose))


def _now():
    return clock.naive_now()


# After a failed attempt to follow a master rotation, wait this long before reading
# the key files again (each request that needs a new data key would otherwise).
RELOAD_RETRY_SECONDS = 1.0
# How long the replaced master key still unwraps, for readers whose snapshot predates
# the rotation's commit. Not longer: a data key wrapped under the old key and planted
# afterwards must not be accepted.
PREVIOUS_KEY_SECONDS = 60.0


class KeyRing:
    def __init__(self, master: MasterKey, active_ttl: float = 5.0, reload=None):
        self.master = master
        # reload(recorded_key_id) -> MasterKey: the key the database names, from this
        # host's key files (MasterKeyError if it has none); None: follow no rotation.
        self.reload = reload
        self._reload_failed: tuple[float, str, MasterKeyError] | None = None
        self._previous_aead: AESGCM | None = None
        self._previous_until = 0.0
        self.recovery_note: str | None = None  # what opening it repaired (master_rotation.recover)
        self.master_aead = AESGCM(master.key)
        self.active_ttl = active_ttl
        self._by_id: dict[int, DataKey] = {}
        # The same keys by the 5-byte value header (format version + key id): the
        # decryption hot path looks a key up without parsing the header.
        self._by_header: dict[bytes, DataKey] = {}
        self._active: dict[tuple[int, str], tuple[DataKey, float]] = {}
        self._lock = threading.RLock()
        self._verified = False

    # -- master key check ------------------------------------------------------

    def verify_master(self) -> None:
        """Refuse a master key that is not the database's; record it on a fresh database.

        Reads only, unless the database has never seen a master key, in which
        case its id is recorded (the first start after ``init``).
        """
        if self._verified:
            return
        with self._lock:
            if self._verified:
                return
            row = CryptoMaster.select().order_by(CryptoMaster.id).first()
            if row is None:
                sample = TenantKey.select().first()
                if sample is not None and not self._can_unwrap(sample):
                    raise MasterKeyError(self._mismatch_message("(not recorded)"))
                CryptoMaster.create(master_key_id=self.master.key_id)
            elif row.master_key_id != self.master.key_id:
                raise MasterKeyError(self._mismatch_message(row.master_key_id, row.rotated_at))
            self._verified = True

    def _can_unwrap(self, row) -> bool:
        try:
            unwrap_key(self.master_aead, row.wrapped, row.tenant_id, row.key_id, row.version, row.purpose)
            return True
        except InvalidTag:
            return False

    def _mismatch_message(self, expected: str, rotated_at=None) -> str:
        rotated = "" if rotated_at is None else (
            f" The database's master key was rotated at {rotated_at:%Y-%m-%d %H:%M} UTC: on a "
            f"second app host, copy the new key file from the host where 'appliance keys "
            f"rotate-master' ran.")
        return (
            f"The master key from {self.master.describe()} (id {self.master.key_id}) is not the "
            f"key this database was encrypted with (id {expected}). Nothing was read or written.{rotated} "
            f"Put the right key file back (from your key backup, or 'appliance keys "
            f"import-recovery KIT'), or point the instance at the database that belongs to this key."
        )

    # -- lookup ----------------------------------------------------------------

    def get(self, key_id: int) -> DataKey:
        key = self._by_id.get(key_id)
        if key is not None:
            return key
        with self._lock:
            key = self._by_id.get(key_id)
            if key is None:
                self.verify_master()
                row = TenantKey.get_or_none(TenantKey.key_id == key_id)
                if row is None:
                    raise KeyUnavailable(f"data key {key_id} does not exist", key_id)
                key = self._load(row)
            return key

    def refresh_master(self, recorded: str | None = None) -> bool:
        """Follow a master key rotation made by another process; True if the key changed.

        Raises MasterKeyError when the database names a key this host cannot find.
        """
        with self._lock:
            if recorded is None:
                recorded = CryptoMaster.select(CryptoMaster.master_key_id).order_by(CryptoMaster.id).scalar()
            if recorded is None or recorded == self.master.key_id:
                return False
            failed = self._reload_failed
            if failed is not None and failed[1] == recorded and time.monotonic() < failed[0]:
                raise failed[2]
            if self.reload is None:
                raise MasterKeyError(
                    f"The master key was rotated (now {recorded}) since this process started with "
                    f"{self.master.key_id}: restart the web and worker services."
                )
            try:
                master = self.reload(recorded)
            except MasterKeyError as exc:
                self._reload_failed = (time.monotonic() + RELOAD_RETRY_SECONDS, recorded, exc)
                log.error("master key rotated to %s but not found on this host: %s", recorded, exc)
                raise
            old = self.master.key_id
            self.replace_master(master)
            self._reload_failed = None
            log.warning("following a master key rotation: key %s replaces %s (from %s)",
                        master.key_id, old, master.describe())
            return True

    def _load(self, row) -> DataKey:
        raw = self._unwrap_any(row)
        if raw is None and self.refresh_master():
            # The row read before the refresh may predate the rotation's commit.
            row = TenantKey.get_or_none(TenantKey.key_id == row.key_id) or row
            raw = self._unwrap_any(row)
        if raw is None:
            raise MasterKeyError(
                f"Data key {row.key_id} of tenant {row.tenant_id} cannot be unwrapped with the "
                f"master key from {self.master.describe()}: wrong master key or a tampered key "
                f"table. Run 'appliance keys status'."
            )
        key = DataKey(row.key_id, row.tenant_id, row.purpose, row.version, row.status, raw)
        self._remember(key)
        return key

    def _remember(self, key: DataKey) -> None:
        self._by_id[key.key_id] = key
        if key.purpose == DATA:
            self._by_header[key.header] = key

    def active(self, tenant_id: int, purpose: str = DATA) -> DataKey:
        """The key new values of this tenant are written with (created on first use)."""
        hit = self._active.get((tenant_id, purpose))
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        # No lock is held while the database is asked. A first key is inserted inside the
        # caller's transaction and may wait for another process's transaction inserting the
        # same key; a thread of this process queued on the lock could be what that one waits
        # for, a deadlock no database can see. Two threads here meet at the key's unique index.
        self.verify_master()
        row = (TenantKey.select()
               .where((TenantKey.tenant_id == tenant_id) & (TenantKey.purpose == purpose)
                      & (TenantKey.status == "active"))
               .order_by(TenantKey.version.desc()).first())
        key = self._create_first(tenant_id, purpose) if row is None else (
            self._by_id.get(row.key_id) or self._load(row))
        with self._lock:
            self._active[(tenant_id, purpose)] = (key, time.monotonic() + self.active_ttl)
        return key

    def index_key(self, tenant_id: int) -> DataKey:
        return self.active(tenant_id, INDEX)

    def ensure_tenant_keys(self, tenant_id: int) -> None:
        """Create a new tenant's keys up front (otherwise they appear on first write)."""
        self.active(tenant_id, DATA)
        self.active(tenant_id, INDEX)

    def invalidate(self, tenant_id: int | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._active.clear()
            else:
                for purpose in (DATA, INDEX):
                    self._active.pop((tenant_id, purpose), None)

    def forget(self, key_ids) -> None:
        with self._lock:
            for key_id in key_ids:
                self._by_id.pop(key_id, None)
            self._by_header = {h: k for h, k in self._by_header.items() if k.key_id in self._by_id}
            self._active.clear()

    # -- creation ----------------------------------------------------------------

    def _create_first(self, tenant_id: int, purpose: str) -> DataKey:
        try:
            # A savepoint if the caller is in a transaction; else, on SQLite, the write lock
            # up front: the master key id it reads must still hold when the key is inserted.
            with write_transaction():
                return self.create_key(tenant_id, purpose, version=1)
        except IntegrityError:
            # Another process created it first; use theirs.
            row = TenantKey.get((TenantKey.tenant_id == tenant_id) & (TenantKey.purpose == purpose)
                                & (TenantKey.version == 1))
            return self._by_id.get(row.key_id) or self._load(row)

    def create_key(self, tenant_id: int, purpose: str, version: int | None = None,
                   status: str = "active") -> DataKey:
        # FOR SHARE on PostgreSQL, held to this transaction's end: a master rotation takes
        # the row FOR UPDATE first, so this key is either re-wrapped by it or wrapped
        # after it under the new key; never left wrapped under the old one.
        query = CryptoMaster.select(CryptoMaster.master_key_id).order_by(CryptoMaster.id)
        if is_postgres():
            query = query.for_update("FOR SHARE")
        recorded = query.scalar()
        if recorded is not None and recorded != self.master.key_id:
            # Rotated by another process since this one loaded its key: follow it, since a
            # key wrapped under the old one would be unreadable for everyone else.
            self.refresh_master(recorded)
        if version is None:
            version = 1 + (TenantKey.select(fn.MAX(TenantKey.version))
                           .where((TenantKey.tenant_id == tenant_id) & (TenantKey.purpose == purpose))
                           .scalar() or 0)
        raw = AESGCM.generate_key(256)
        for _ in range(8):
            key_id = secrets.randbelow(2**31 - 2) + 1
            if TenantKey.get_or_none(TenantKey.key_id == key_id) is None:
                break
        TenantKey.create(
            key_id=key_id, tenant_id=tenant_id, purpose=purpose, version=version, status=status,
            wrapped=wrap_key(self.master_aead, raw, tenant_id, key_id, version, purpose),
        )
        key = DataKey(key_id, tenant_id, purpose, version, status, raw)
        self._remember(key)
        log.info("created %s key %s v%s for tenant %s", purpose, key_id, version, tenant_id)
        return key

    def replace_master(self, master: MasterKey) -> None:
        with self._lock:
            if master.key_id != self.master.key_id:
                self._previous_aead = self.master_aead
                self._previous_until = time.monotonic() + PREVIOUS_KEY_SECONDS
            self.master = master
            self.master_aead = AESGCM(master.key)

    def _unwrap_any(self, row) -> bytes | None:
        """Unwrap with the master key, else with the one it replaced: a reader whose snapshot
        predates a rotation's commit still sees the old wrapping."""
        previous = self._previous_aead if time.monotonic() < self._previous_until else None
        for aead in (self.master_aead, previous):
            if aead is None:
                continue
            try:
                return unwrap_key(aead, row.wrapped, row.tenant_id, row.key_id, row.version, row.purpose)
            except InvalidTag:
                continue
        return None

    # -- convenience ---------------------------------------------------------------

    def seal(self, tenant_id: int, table: str, column: str, uid, plaintext: bytes) -> bytes:
        key = self.active(tenant_id)
        return envelope.seal(key.aead, key.key_id, envelope.aad_prefix(tenant_id, table, column),
                             envelope.uid_bytes(uid), plaintext)

    def open(self, tenant_id: int, table: str, column: str, uid, blob: bytes) -> bytes:
        key = self.get(envelope.key_id_of(blob))
        if key.tenant_id != tenant_id or key.purpose != DATA:
            raise envelope.DecryptionFailed("value names another tenant's key", key.key_id)
        return envelope.open_sealed(key.aead, envelope.aad_prefix(tenant_id, table, column),
                                    envelope.uid_bytes(uid), blob)


# -- the process-wide key ring ------------------------------------------------------

_current: KeyRing | None = None


class CryptoNotReady(RuntimeError):
    pass


def set_keyring(keyring: KeyRing | None) -> None:
    global _current
    _current = keyring


def get_keyring() -> KeyRing:
    if _current is None:
        raise CryptoNotReady(
            "encryption keys are not loaded: the app factory calls appliance.web.crypto.init_app, "
            "commands call appliance.web.crypto.open_keyring"
        )
    return _current


def keyring_or_none() -> KeyRing | None:
    return _current


def shred_tenant_keys(tenant_id: int, keyring: KeyRing | None = None) -> int:
    """Delete a tenant's keys: its ciphertexts, here and in every later backup, become noise.

    For tenant deletion (call it in the same transaction that deletes the tenant's rows).
    Returns the number of keys deleted.
    """
    deleted = TenantKey.delete().where(TenantKey.tenant_id == tenant_id).execute()
    kr = keyring or _current
    if kr is not None:
        with kr._lock:
            kr.forget([k for k, v in kr._by_id.items() if v.tenant_id == tenant_id])
    return deleted
