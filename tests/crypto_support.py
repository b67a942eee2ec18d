"""Tiny models and an instance builder for the crypto tests (independent of the core models)."""

from __future__ import annotations

import uuid

from peewee import AutoField, IntegerField, Model, UUIDField

from appliance.core.config import Instance, write_config
from appliance.web.crypto import (
    BlindIndexField,
    EncryptedBytesField,
    EncryptedJSONField,
    EncryptedModel,
    EncryptedTextField,
    ensure_master_key,
    open_keyring,
)
from appliance.web.crypto.tables import CRYPTO_MODELS
from appliance.web.db import bind, database_proxy


class TContact(EncryptedModel, Model):
    id = AutoField()
    tenant = IntegerField(index=True)
    uid = UUIDField(default=uuid.uuid4)
    name = EncryptedTextField(null=True)
    email = EncryptedTextField(null=True)
    phone = EncryptedTextField(null=True)
    notes = EncryptedTextField(null=True)
    email_bidx = BlindIndexField("email", "email")
    phone_bidx = BlindIndexField("phone", "phone")

    class Meta:
        database = database_proxy
        table_name = "tcrypto_contact"


class TMessage(EncryptedModel, Model):
    id = AutoField()
    tenant = IntegerField(index=True)
    uid = UUIDField(default=uuid.uuid4)
    conversation = IntegerField(default=0)
    body = EncryptedTextField(null=True)
    attachment = EncryptedBytesField(null=True)
    meta = EncryptedJSONField(null=True)

    class Meta:
        database = database_proxy
        table_name = "tcrypto_message"


TEST_MODELS = [TContact, TMessage]


def make_instance(home, settings=None, create_key=True) -> Instance:
    """An instance dir with config and (optionally) a fresh master key; the DB bound and migrated."""
    cfg = {"database_url": "sqlite:///appliance.db", "crypto_key_cache_seconds": 0.2,
           "phone_default_country_code": "44"}
    cfg.update(settings or {})
    write_config(home, cfg)
    instance = Instance.load(home)
    if create_key:
        ensure_master_key(instance)
    db = bind(instance.database_url)
    db.create_tables(CRYPTO_MODELS + TEST_MODELS)
    return instance


def open_instance(instance):
    bind(instance.database_url)
    return open_keyring(instance)


def key_id_of(blob) -> int:
    return int.from_bytes(bytes(blob)[1:5], "big")
