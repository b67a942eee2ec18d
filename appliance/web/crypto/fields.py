"""peewee field types for encrypted columns, and the model mixin that drives them.

peewee's ``Field.db_value`` sees a value but not its row, and the associated
data needs the row (tenant, uid). So the work happens at the model level:

* the column holds ``Ciphertext`` (raw bytes as read from the database);
* assigning a plaintext stores a ``_Pending`` marker; ``EncryptedModel.save``
  seals every pending value with the tenant's active key before peewee writes;
* reading an attribute decrypts once, lazily, and caches the plaintext on the
  instance; a value that fails authentication reads as ``INTEGRITY_FAILED``
  (a str sentinel rendering "[integrity error]") for that field only, and the
  event is logged without the data;
* ``db_value`` refuses anything that is not already a ciphertext, so no code
  path (``Model.update``, ``insert_many``) can write plaintext by mistake.

Bulk inserts go through ``Model.prepare_rows(rows)``; raw SQL and ``.dicts()``
/ ``.tuples()`` queries see ciphertext and decrypt with ``Model.decrypt_raw``.
In-place changes to a decrypted JSON value are not noticed: assign it again.
"""

from __future__ import annotations

import json
import logging
import uuid
from os import urandom as _urandom

from cryptography.exceptions import InvalidTag
from peewee import BlobField, FieldAccessor

from appliance.web.crypto import blind_index, envelope
from appliance.web.crypto import keyring as _keyring

log = logging.getLogger("appliance.web.crypto")

# Callables ``fn(event: dict)`` told about integrity failures (e.g. the audit
# log); the event holds table, column, row uid, key id and reason, no data.
integrity_listeners: list = []

_REGISTRY: list[type] = []
_MISS = object()


class Ciphertext(bytes):
    """The stored bytes of an encrypted column (never plaintext)."""

    __slots__ = ()


class _Pending:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class IntegrityFailed(str):
    """Shown instead of a value that failed authentication; renders safely anywhere."""

    __slots__ = ()

    def __repr__(self):
        return "INTEGRITY_FAILED"


INTEGRITY_FAILED = IntegrityFailed("[integrity error]")


class PlaintextRefused(TypeError):
    pass


class EncryptedFieldAccessor(FieldAccessor):
    """Decrypts on first read and caches the plaintext on the instance.

    The common case is inlined (an inbox page decrypts a hundred values);
    anything unusual, including a failed check, goes through
    ``EncryptedModel._crypto_decrypt``, which reports it.
    """

    _prefixes = None

    def _prepare(self):
        model = self.model
        self._tenant_name = model.crypto_tenant_field
        self._uid_name = model.crypto_uid_field
        self._table = model._meta.table_name
        self._prefixes = {}

    def __get__(self, instance, instance_type=None):
        if instance is None:
            return self.field
        name = self.name
        data = instance.__data__
        value = data.get(name)
        if value is None:
            return None
        if type(value) is _Pending:
            return value.value
        d = instance.__dict__
        cache = d.get("_crypto_plain")
        if cache is None:
            cache = d["_crypto_plain"] = {}
        else:
            hit = cache.get(name)
            if hit is not None and hit[0] is value:
                return hit[1]
        kr = _keyring._current
        key = kr._by_header.get(value[:5]) if kr is not None else None
        plain = _MISS
        if key is not None:
            prefixes = self._prefixes
            if prefixes is None:
                self._prepare()
                prefixes = self._prefixes
            tenant_id = data.get(self._tenant_name)
            uid = data.get(self._uid_name)
            if tenant_id == key.tenant_id and type(uid) is uuid.UUID:
                prefix = prefixes.get(tenant_id)
                if prefix is None:
                    prefix = prefixes[tenant_id] = envelope.aad_prefix(tenant_id, self._table,
                                                                        self.field.column_name)
                try:  # noqa: SIM105 - cheaper than contextlib.suppress on this hot path
                    plain = self.field.decode(key.aead.decrypt(value[5:17], value[17:],
                                                               value[:5] + prefix + uid.bytes))
                except InvalidTag:
                    pass
        if plain is _MISS:
            plain = instance._crypto_decrypt(self.field, value)
        cache[name] = (value, plain)
        return plain

    def __set__(self, instance, value):
        t = type(value)
        if t is Ciphertext or value is None:  # loaded from the database (the common case)
            instance.__data__[self.name] = value
        elif t is IntegrityFailed:
            # Re-saving a form that showed the sentinel must not destroy the evidence.
            return
        else:
            instance.__data__[self.name] = _Pending(value)
        instance._dirty.add(self.name)


class EncryptedField(BlobField):
    accessor_class = EncryptedFieldAccessor
    field_type = "BLOB"

    def encode(self, value) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes):
        raise NotImplementedError

    def python_value(self, value):
        if value is None or type(value) is Ciphertext:
            return value
        return Ciphertext(value)

    def db_value(self, value):
        if value is None:
            return None
        if type(value) is Ciphertext:
            return self._constructor(value)
        raise PlaintextRefused(
            f"{self.model.__name__}.{self.name} is encrypted: write it through the model "
            f"(save()/prepare_rows()), never as a raw query value"
        )


class EncryptedTextField(EncryptedField):
    def encode(self, value) -> bytes:
        return str(value).encode("utf-8")

    def decode(self, data: bytes):
        return data.decode("utf-8")


class EncryptedJSONField(EncryptedField):
    def encode(self, value) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def decode(self, data: bytes):
        return json.loads(data)


class EncryptedBytesField(EncryptedField):
    def encode(self, value) -> bytes:
        return bytes(value)

    def decode(self, data: bytes):
        return data


class BlindIndexField(BlobField):
    """An HMAC of another (encrypted) field's normalised value, kept up to date on save."""

    def __init__(self, source: str, kind: str, **kwargs):
        if kind not in blind_index.NORMALISERS:
            raise ValueError(f"unknown blind index kind {kind!r}")
        kwargs.setdefault("null", True)
        kwargs.setdefault("index", True)
        super().__init__(**kwargs)
        self.source = source
        self.kind = kind

    def python_value(self, value):
        return None if value is None else bytes(value)


class _Spec:
    """Per-model facts the hot path needs, computed once."""

    def __init__(self, model):
        meta = model._meta
        self.table = meta.table_name
        self.tenant_field = meta.fields[model.crypto_tenant_field]
        self.uid_field = meta.fields[model.crypto_uid_field]
        self.tenant_name = self.tenant_field.name
        self.uid_name = self.uid_field.name
        self.encrypted = [f for f in meta.sorted_fields if isinstance(f, EncryptedField)]
        self.indexes = [f for f in meta.sorted_fields if isinstance(f, BlindIndexField)]
        self.by_source = {}
        for f in self.indexes:
            self.by_source.setdefault(f.source, []).append(f)
        self._prefix = {}

    def prefix(self, tenant_id, column):
        key = (tenant_id, column)
        p = self._prefix.get(key)
        if p is None:
            p = self._prefix[key] = envelope.aad_prefix(tenant_id, self.table, column)
        return p


class EncryptedModel:
    """Mixin for peewee models with encrypted fields: ``class Contact(EncryptedModel, BaseModel)``.

    The row needs a tenant (``crypto_tenant_field``, id 0 = installation-wide)
    and a uid (``crypto_uid_field``, a UUIDField with default uuid4) that are
    set before the first save and never change: both are part of every
    value's associated data.
    """

    crypto_tenant_field = "tenant"
    crypto_uid_field = "uid"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY.append(cls)

    @classmethod
    def _crypto_spec(cls) -> _Spec:
        spec = cls.__dict__.get("_crypto_spec_cache")
        if spec is None:
            spec = _Spec(cls)
            cls._crypto_spec_cache = spec
        return spec

    # -- per-row ------------------------------------------------------------------

    def _crypto_tenant_id(self) -> int:
        spec = self._crypto_spec()
        tenant_id = self.__data__.get(spec.tenant_field.name)
        if tenant_id is None:
            raise ValueError(f"{type(self).__name__}: set the tenant before encrypted fields are used")
        return tenant_id

    def _crypto_uid(self) -> bytes:
        return envelope.uid_bytes(self.__data__.get(self._crypto_spec().uid_field.name))

    def _crypto_decrypt(self, field, blob):
        spec = self._crypto_spec()
        tenant_id = uid = None
        try:
            tenant_id = self._crypto_tenant_id()
            uid = self._crypto_uid()
            return field.decode(
                _open(spec, tenant_id, field.column_name, uid, blob)
            )
        except envelope.DecryptionFailed as exc:
            _report(spec.table, field.column_name, uid, exc.key_id, exc.reason, tenant_id)
            return INTEGRITY_FAILED

    def encrypt_pending(self) -> None:
        """Seal assigned plaintexts, re-seal values under a retiring key, refresh blind indexes."""
        cls = type(self)
        spec = cls.__dict__.get("_crypto_spec_cache") or cls._crypto_spec()
        data = self.__data__
        dirty = self._dirty
        key = None
        for field in spec.encrypted:
            name = field.name
            value = data.get(name)
            if value is None:
                if name in dirty and name in spec.by_source:
                    for ix in spec.by_source[name]:
                        data[ix.name] = None
                        dirty.add(ix.name)
                continue
            if key is None:
                tenant_id = data.get(spec.tenant_name)
                if tenant_id is None:
                    self._crypto_tenant_id()  # raises the explanatory error
                key = _keyring.get_keyring().active(tenant_id)
                header = key.header
                uid = data.get(spec.uid_name)
                uid = uid.bytes if type(uid) is uuid.UUID else envelope.uid_bytes(uid)
            pending = type(value) is _Pending
            if pending:
                plain = value.value
            elif value[:5] == header:
                continue
            elif len(value) >= envelope.OVERHEAD:
                # Written under an older key: saving the row moves it to the active one,
                # so a rotation never has to chase rows that the app keeps rewriting.
                plain = getattr(self, name)
                if type(plain) is IntegrityFailed:
                    continue
            else:
                continue
            nonce = _urandom(12)
            sealed = Ciphertext(header + nonce + key.aead.encrypt(
                nonce, field.encode(plain), header + spec.prefix(tenant_id, field.column_name) + uid))
            data[name] = sealed
            dirty.add(name)
            cache = self.__dict__.get("_crypto_plain")
            if cache is None:
                cache = self.__dict__["_crypto_plain"] = {}
            cache[name] = (sealed, plain)
            if pending and name in spec.by_source:
                for ix in spec.by_source[name]:
                    data[ix.name] = blind_index.compute(tenant_id, ix.kind, plain)
                    dirty.add(ix.name)

    def save(self, *args, **kwargs):
        self.encrypt_pending()
        return super().save(*args, **kwargs)

    # -- class-level helpers ---------------------------------------------------------

    @classmethod
    def encrypted_fields(cls):
        return list(cls._crypto_spec().encrypted)

    @classmethod
    def encrypt_value(cls, tenant_id: int, field_name: str, uid, value) -> Ciphertext | None:
        if value is None:
            return None
        spec = cls._crypto_spec()
        field = cls._meta.fields[field_name]
        key = _keyring.get_keyring().active(tenant_id)
        return Ciphertext(envelope.seal(key.aead, key.key_id, spec.prefix(tenant_id, field.column_name),
                                        envelope.uid_bytes(uid), field.encode(value)))

    @classmethod
    def decrypt_raw(cls, tenant_id: int, field_name: str, uid, blob):
        """Decrypt a value read by a raw/.tuples() query; INTEGRITY_FAILED if not authentic."""
        if blob is None:
            return None
        spec = cls._crypto_spec()
        field = cls._meta.fields[field_name]
        ub = envelope.uid_bytes(uid)
        try:
            return field.decode(_open(spec, tenant_id, field.column_name, ub, bytes(blob)))
        except envelope.DecryptionFailed as exc:
            _report(spec.table, field.column_name, ub, exc.key_id, exc.reason, tenant_id)
            return INTEGRITY_FAILED

    @classmethod
    def prepare_rows(cls, rows: list[dict]) -> list[dict]:
        """Encrypt plaintext dicts for ``insert_many`` (uids filled in, blind indexes computed)."""
        spec = cls._crypto_spec()
        kr = _keyring.get_keyring()
        tname, uname = spec.tenant_field.name, spec.uid_field.name
        for row in rows:
            tenant = row[tname]
            tenant_id = tenant if isinstance(tenant, int) else tenant.get_id()
            if row.get(uname) is None:
                row[uname] = uuid.uuid4()
            uid = envelope.uid_bytes(row[uname])
            key = kr.active(tenant_id)
            for field in spec.encrypted:
                value = row.get(field.name)
                if value is None or type(value) is Ciphertext:
                    continue
                row[field.name] = Ciphertext(envelope.seal(
                    key.aead, key.key_id, spec.prefix(tenant_id, field.column_name), uid, field.encode(value)))
                for ix in spec.by_source.get(field.name, ()):
                    row[ix.name] = blind_index.compute(tenant_id, ix.kind, value, kr)
        return rows

    @classmethod
    def index_match(cls, tenant_id: int, source: str, value):
        """A where-clause for "source equals value" through its blind index.

        Matches nothing when the value does not normalise (e.g. letters typed
        into a phone search); combine with other clauses, then confirm with
        ``confirm_match`` if exactness matters.
        """
        ix = cls._crypto_spec().by_source[source][0]
        digest = blind_index.compute(tenant_id, ix.kind, value)
        if digest is None:
            return ix.is_null(False) & ix.is_null(True)
        return ix == digest

    @classmethod
    def index_digest(cls, tenant_id: int, source: str, value) -> bytes | None:
        """The blind index of ``value`` for ``source`` (None: it does not normalise, matches nothing)."""
        return blind_index.compute(tenant_id, cls._crypto_spec().by_source[source][0].kind, value)

    @classmethod
    def confirm_matches(cls, rows, source: str, value) -> list:
        """The rows found by ``index_digest`` whose decrypted ``source`` really equals ``value``."""
        kind = cls._crypto_spec().by_source[source][0].kind
        return [row for row in rows if blind_index.same(kind, getattr(row, source), value)]

    @classmethod
    def find_by_index(cls, tenant_id: int, source: str, value, query=None) -> list:
        """Rows of the tenant whose ``source`` equals ``value`` (index, then decrypt and compare)."""
        spec = cls._crypto_spec()
        kind = spec.by_source[source][0].kind
        q = query if query is not None else cls.select()
        q = q.where((spec.tenant_field == tenant_id) & cls.index_match(tenant_id, source, value))
        return [row for row in q if blind_index.same(kind, getattr(row, source), value)]


def _open(spec: _Spec, tenant_id: int, column: str, uid: bytes, blob: bytes) -> bytes:
    kr = _keyring.get_keyring()
    key = kr._by_id.get(envelope.key_id_of(blob)) or kr.get(envelope.key_id_of(blob))
    if key.tenant_id != tenant_id or key.purpose != _keyring.DATA:
        raise envelope.DecryptionFailed("value names another tenant's key", key.key_id)
    return envelope.open_sealed(key.aead, spec.prefix(tenant_id, column), uid, blob)


def _report(table, column, uid, key_id, reason, tenant_id=None) -> None:
    row_uid = str(uuid.UUID(bytes=uid)) if isinstance(uid, bytes) and len(uid) == 16 else None
    event = {"table": table, "column": column, "row_uid": row_uid, "key_id": key_id, "reason": reason,
             "tenant_id": tenant_id}
    log.warning("encrypted value failed its integrity check: table=%s column=%s row_uid=%s "
                "key_id=%s reason=%s", table, column, row_uid, key_id, reason)
    for listener in integrity_listeners:
        try:
            listener(event)
        except Exception:  # an audit hook must not break the page
            log.exception("integrity listener failed")


def registered_models() -> list[type]:
    """Every model class using EncryptedModel that has at least one encrypted field."""
    seen, out = set(), []
    for model in _REGISTRY:
        if not hasattr(model, "_meta") or model in seen:
            continue
        seen.add(model)
        if any(isinstance(f, EncryptedField) for f in model._meta.sorted_fields):
            out.append(model)
    return out
