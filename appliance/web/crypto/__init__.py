"""Encryption at rest: envelope keys, encrypted peewee fields, blind indexes, rotation.

Key hierarchy: a master key outside the database (master.py) wraps random
per-tenant data and blind-index keys stored in ``crypto_tenant_key``
(keyring.py); values are AES-256-GCM with their location as associated data
(envelope.py); models opt in with ``EncryptedModel`` and the field types in
fields.py. Entry points for the rest of the app:

* ``ensure_master_key(instance)`` — ``appliance init`` creates the key once;
* ``init_app(app, instance)`` — the app factory loads and checks the key;
* ``open_keyring(instance)`` — the same for commands that run without an app.
"""

from __future__ import annotations

import logging

from appliance.web.crypto.blind_index import (
    email_index,
    normalise_email,
    normalise_phone,
    phone_index,
)
from appliance.web.crypto.envelope import DecryptionFailed
from appliance.web.crypto.fields import (
    INTEGRITY_FAILED,
    BlindIndexField,
    Ciphertext,
    EncryptedBytesField,
    EncryptedJSONField,
    EncryptedModel,
    EncryptedTextField,
    IntegrityFailed,
    PlaintextRefused,
    integrity_listeners,
    registered_models,
)
from appliance.web.crypto.keyring import CryptoNotReady, KeyRing, get_keyring, set_keyring
from appliance.web.crypto.master import (
    MasterKey,
    MasterKeyError,
    ensure_master_key,
    key_file_path,
    load_master_key,
    master_key_id,
)

__all__ = [
    "INTEGRITY_FAILED",
    "BlindIndexField",
    "Ciphertext",
    "CryptoNotReady",
    "DecryptionFailed",
    "EncryptedBytesField",
    "EncryptedJSONField",
    "EncryptedModel",
    "EncryptedTextField",
    "IntegrityFailed",
    "KeyRing",
    "MasterKey",
    "MasterKeyError",
    "PlaintextRefused",
    "email_index",
    "ensure_master_key",
    "get_keyring",
    "init_app",
    "integrity_listeners",
    "key_file_path",
    "load_master_key",
    "master_key_id",
    "normalise_email",
    "normalise_phone",
    "open_keyring",
    "phone_index",
    "registered_models",
    "set_keyring",
]

log = logging.getLogger("appliance.web.crypto")


def open_keyring(instance, passphrase: str | None = None, install: bool = True) -> KeyRing:
    """Load the master key and check it against the bound database before anything runs.

    The database proxy must already be bound. Raises MasterKeyError (a
    ConfigError) naming the key source and what to do; in that case nothing
    has been read from or written to the encrypted tables.
    """
    from appliance.web.crypto import blind_index
    from appliance.web.crypto.rotation import _pending_path, _promote
    from appliance.web.crypto.tables import CryptoMaster
    from appliance.web.db import database_proxy

    blind_index.configure(
        default_country_code=str(instance["phone_default_country_code"] or ""),
        trunk_prefix=str(instance["phone_trunk_prefix"]),
    )
    master = load_master_key(instance, passphrase=passphrase)
    keyring = KeyRing(master, active_ttl=float(instance["crypto_key_cache_seconds"]))
    opened_here = database_proxy.is_closed()
    if opened_here:
        database_proxy.connect()
    try:
        if CryptoMaster._meta.table_name in database_proxy.get_tables():
            try:
                keyring.verify_master()
            except MasterKeyError:
                pending = _pending_path(master.path) if master.source == "file" else None
                row = CryptoMaster.select().order_by(CryptoMaster.id).first()
                if pending is None or not pending.exists() or row is None:
                    raise
                candidate = load_master_key_file(instance, pending)
                if candidate.key_id != row.master_key_id:
                    raise
                # A 'keys rotate-master' stopped after its commit: finish its file swap.
                _promote(master.path, master.key_id)
                log.warning("completed an interrupted master key rotation: %s is now the key file",
                            master.path)
                keyring = KeyRing(load_master_key(instance), active_ttl=keyring.active_ttl)
                keyring.verify_master()
    finally:
        if opened_here:
            database_proxy.close()
    if install:
        set_keyring(keyring)
    return keyring


def load_master_key_file(instance, path):
    from appliance.web.crypto.master import read_key_file

    return read_key_file(instance, path)


def init_app(app, instance, passphrase: str | None = None) -> KeyRing:
    """Called by ``create_app`` once the database is bound; refuses to start on a bad key."""
    keyring = open_keyring(instance, passphrase=passphrase)
    app.extensions["crypto"] = keyring
    if audit_integrity_failure not in integrity_listeners:
        integrity_listeners.append(audit_integrity_failure)
    return keyring


def audit_integrity_failure(event: dict) -> None:
    """Put a failed integrity check in the tamper-evident audit trail (ids only, no data)."""
    # Imported here: the models import this package's field types.
    from appliance.web.models.audit import record

    record("crypto.integrity_failed", tenant_id=event.get("tenant_id") or None,
           target=f"{event['table']}:{event['row_uid']}", column=event["column"],
           key_id=event["key_id"], reason=event["reason"])
