"""The business layer: catalogue prices, contracts, scheduled changes, metering, invoices.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    UUIDField,
)

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Tenant, User


class PricePolicy(FrozenModel):
    id = AutoField()
    program = CharField(max_length=32)
    effective_from = DateField()
    per_seat = BooleanField()
    monthly_fee_minor = IntegerField()
    setup_fee_minor = IntegerField()
    included_conversations = IntegerField()
    included_messages = IntegerField()
    overage_conversation_minor = IntegerField()
    overage_message_minor = IntegerField()
    published = BooleanField()
    created_at = DateTimeField()

    class Meta:
        table_name = "price_policy"
        indexes = ((("program", "effective_from"), True),)


class Contract(FrozenModel):
    id = AutoField()
    account = ForeignKeyField(Tenant, backref="+", on_delete="RESTRICT")
    status = CharField(max_length=12)
    starts_on = DateField()
    ends_on = DateField()
    renewal = CharField(max_length=8)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField()

    class Meta:
        table_name = "contract"


class ContractLine(FrozenModel):
    id = AutoField()
    contract = ForeignKeyField(Contract, backref="+", on_delete="CASCADE")
    program = CharField(max_length=32)
    seats = IntegerField()
    per_seat = BooleanField()
    monthly_fee_minor = IntegerField()
    setup_fee_minor = IntegerField()
    included_conversations = IntegerField()
    included_messages = IntegerField()
    overage_conversation_minor = IntegerField()
    overage_message_minor = IntegerField()
    setup_billed = BooleanField()

    class Meta:
        table_name = "contract_line"
        indexes = ((("contract", "program"), True),)


class SeatHistory(FrozenModel):
    id = AutoField()
    line = ForeignKeyField(ContractLine, backref="+", on_delete="CASCADE")
    effective_on = DateField()
    seats = IntegerField()

    class Meta:
        table_name = "seat_history"
        indexes = ((("line", "effective_on"), True),)


class ScheduledChange(FrozenModel):
    id = AutoField()
    account = ForeignKeyField(Tenant, backref="+", on_delete="CASCADE")
    contract = ForeignKeyField(Contract, null=True, on_delete="CASCADE", backref="+")
    kind = CharField(max_length=20)
    program = CharField(max_length=32, null=True)
    value = CharField(max_length=40, null=True)
    effective_on = DateField(index=True)
    state = CharField(max_length=10, index=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField()
    applied_at = DateTimeField(null=True)
    outcome = TextField(null=True)

    class Meta:
        table_name = "scheduled_change"


class UsageDay(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    day = DateField()
    conversations = IntegerField()
    messages_in = IntegerField()
    messages_out = IntegerField()
    active_operators = IntegerField()
    seats = IntegerField()
    programs = CharField(max_length=255)
    computed_at = DateTimeField()

    class Meta:
        table_name = "usage_day"
        indexes = ((("tenant", "day"), True), (("day",), False))


class InvoiceCounter(FrozenModel):
    id = AutoField()
    last_number = IntegerField()

    class Meta:
        table_name = "invoice_counter"


class Invoice(FrozenModel):
    id = AutoField()
    account = ForeignKeyField(Tenant, backref="+", on_delete="RESTRICT")
    kind = CharField(max_length=12)
    number = IntegerField(null=True, unique=True)
    period_start = DateField()
    period_end = DateField()
    status = CharField(max_length=10)
    total_minor = IntegerField()
    currency = CharField(max_length=3)
    corrects = ForeignKeyField("self", null=True, on_delete="RESTRICT", backref="+")
    issued_at = DateTimeField(null=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "invoice"
        indexes = ((("account", "kind", "period_start"), False),)


class InvoiceLine(FrozenModel):
    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="+", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="RESTRICT", backref="+")
    description = CharField(max_length=200)
    quantity = IntegerField()
    unit_price_minor = IntegerField()
    amount_minor = IntegerField()

    class Meta:
        table_name = "invoice_line"


class Payment(FrozenModel):
    id = AutoField()
    account = ForeignKeyField(Tenant, backref="+", on_delete="RESTRICT")
    amount_minor = IntegerField()
    received_on = DateField()
    reference = CharField(max_length=120)
    recorded_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField()

    class Meta:
        table_name = "payment"


class Notification(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    key = CharField(max_length=120, unique=True)
    text = CharField(max_length=300)
    created_at = DateTimeField()
    read_at = DateTimeField(null=True)

    class Meta:
        table_name = "notification"


class Application(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    account = ForeignKeyField(Tenant, null=True, on_delete="CASCADE", backref="+")
    company = BlobField(null=True)
    applicant_name = BlobField(null=True)
    applicant_email = BlobField(null=True)
    lines = CharField(max_length=400)
    starts_on = DateField()
    state = CharField(max_length=10, index=True)
    quote_monthly_minor = IntegerField()
    quote_setup_minor = IntegerField()
    address_key = CharField(max_length=64, null=True, index=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    decided_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    decided_at = DateTimeField(null=True)
    contract = ForeignKeyField(Contract, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(index=True)

    class Meta:
        table_name = "application"


class ApplicationComment(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    application = ForeignKeyField(Application, on_delete="CASCADE", backref="+")
    author = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    body = BlobField()
    created_at = DateTimeField()

    class Meta:
        table_name = "application_comment"


MODELS = [PricePolicy, Contract, ContractLine, SeatHistory, ScheduledChange, UsageDay, InvoiceCounter, Invoice,
          InvoiceLine, Payment, Notification, Application, ApplicationComment]


def up(db, migrator):
    create_frozen(db, MODELS)
    # The one counter row invoice numbers are taken from (locked while a number is taken).
    with db.bind_ctx([InvoiceCounter]):
        InvoiceCounter.insert(id=1, last_number=0).on_conflict_ignore().execute()
