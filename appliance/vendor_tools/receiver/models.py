"""The receiver's own tables, on its own database proxy.

Kept apart from the web app's ``database_proxy`` on purpose: the vendor's
receiver and a customer's appliance must never share a database, and a test
may run both in one process.
"""

from __future__ import annotations

import datetime as dt

from peewee import (
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

from appliance.core import clock

vendor_db = DatabaseProxy()

PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal", "busy_timeout": 10000}


def utcnow() -> dt.datetime:
    return clock.naive_now()


class VendorModel(Model):
    class Meta:
        database = vendor_db
        legacy_table_names = False


class Installation(VendorModel):
    installation_id = CharField(max_length=36, unique=True)
    public_key = TextField()  # PEM, as registered by a vendor engineer
    fingerprint = CharField(max_length=64)
    label = CharField(max_length=200, null=True)  # the vendor's own note (customer name)
    registered_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(null=True)
    # An armoured licence to hand back on the next sync; the appliance verifies it.
    licence_text = TextField(null=True)
    licence_updated_at = DateTimeField(null=True)


class Report(VendorModel):
    installation = ForeignKeyField(Installation, backref="reports", on_delete="CASCADE")
    report_id = CharField(max_length=36)
    generated_at = CharField(max_length=20)
    first_day = DateField()
    last_day = DateField()
    version = CharField(max_length=40)
    profile = CharField(max_length=20)
    source = CharField(max_length=10)  # http | file
    received_at = DateTimeField(default=utcnow)
    payload = TextField()  # canonical JSON, exactly the signed bytes
    signature = TextField()

    class Meta:
        indexes = ((("installation", "report_id"), True),)


class DayUsage(VendorModel):
    """Latest known counts per installation, day and tenant (a newer report replaces a day)."""

    installation = ForeignKeyField(Installation, backref="usage", on_delete="CASCADE")
    date = DateField()
    tenant = CharField(max_length=36)
    tenant_name = CharField(max_length=200, null=True)
    conversations = IntegerField()
    messages = IntegerField()
    active_operators = IntegerField()
    seats_used = IntegerField()
    programs = TextField(default="[]")
    report = ForeignKeyField(Report, on_delete="CASCADE")
    generated_at = CharField(max_length=20)

    class Meta:
        indexes = ((("installation", "date", "tenant"), True),)


class ReceivedBatch(VendorModel):
    """Batches by idempotency key, so a retried batch gets the first answer back."""

    idempotency_key = CharField(max_length=64, unique=True)
    report_ids = TextField()  # sorted JSON list: a replay must be the very same batch
    received_at = DateTimeField(default=utcnow)
    results = TextField()


class VendorSetting(VendorModel):
    key = CharField(max_length=64, primary_key=True)
    value = TextField()


ALL_MODELS = [Installation, Report, DayUsage, ReceivedBatch, VendorSetting]


def open_db(path) -> SqliteDatabase:
    """Bind the proxy to the SQLite file and create the tables (the receiver owns its schema)."""
    db = SqliteDatabase(str(path), pragmas=PRAGMAS, check_same_thread=False)
    vendor_db.initialize(db)
    with db.connection_context():
        db.create_tables(ALL_MODELS, safe=True)
    return db
