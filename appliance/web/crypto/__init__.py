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

    The database proxy must already be bound. A master key rotation that stopped
    half-way is finished first (master_rotation.recover). Raises MasterKeyError (a
    ConfigError) naming the key source and what to do; in that case nothing has
    been read from or written to the encrypted tables.
    """
    from appliance.web.crypto import blind_index
    from appliance.web.crypto.master_rotation import recorded_master_id, recover, reload_master
    from appliance.web.crypto.tables import CryptoMaster
    from appliance.web.db import database_proxy

    blind_index.configure(
        default_country_code=str(instance["phone_default_country_code"] or ""),
        trunk_prefix=str(instance["phone_trunk_prefix"]),
    )
    opened_here = database_proxy.is_closed()
    if opened_here:
        database_proxy.connect()
    try:
        has_table = CryptoMaster._meta.table_name in database_proxy.get_tables()
        recorded = recorded_master_id() if has_table else None
        master, note = recover(instance, recorded, passphrase)
        master = master or load_master_key(instance, passphrase=passphrase)
        keyring = KeyRing(master, active_ttl=float(instance["crypto_key_cache_seconds"]),
                          reload=lambda key_id: reload_master(instance, key_id, passphrase))
        keyring.recovery_note = note
        if has_table:
            keyring.verify_master()
    finally:
        if opened_here:
            database_proxy.close()
    if install:
        set_keyring(keyring)
    return keyring


def init_app(app, instance, passphrase: str | None = None) -> KeyRing:
    """Called by ``create_app`` once the database is bound; refuses to start on a bad key."""
    keyring = open_keyring(instance, passphrase=passphrase)
    app.extensions["crypto"] = keyring
    if audit_integrity_failure not in integrity_listeners:
        integrity_listeners.append(audit_integrity_failure)
    return keyring


def register_error_handler(app) -> None:
    """Answer a missing key with a 503; registered at once by create_app, because the key
    check itself may run late (on the first request after a database outage), when Flask
    no longer accepts new handlers."""
    app.register_error_handler(MasterKeyError, keys_unavailable)


def keys_unavailable(exc: MasterKeyError):
    """A 503 that says why (a rotated master key this host cannot find), never a bare 500."""
    from flask import jsonify, render_template, request

    from appliance.web import wants_json

    log.error("encryption keys unavailable on %s %s: %s", request.method, request.url_rule, exc)
    message = ("Encryption keys are unavailable on this server; try again shortly. "
               "Admins: see the service log and 'appliance keys status'.")
    if wants_json():
        answer = jsonify(error="Service Unavailable", message=message, status=503)
    else:
        from werkzeug.exceptions import ServiceUnavailable

        answer = render_template("error.html", error=ServiceUnavailable(description=message))
    return answer, 503, {"Retry-After": "5"}


def audit_integrity_failure(event: dict) -> None:
    """Put a failed integrity check in the tamper-evident audit trail (ids only, no data)."""
    # Imported here: the models import this package's field types.
    from appliance.web.models.audit import record

    record("crypto.integrity_failed", tenant_id=event.get("tenant_id") or None,
           target=f"{event['table']}:{event['row_uid']}", column=event["column"],
           key_id=event["key_id"], reason=event["reason"])
