"""The business layer's tables. Money columns are integers of minor units (``*_minor``)."""

from __future__ import annotations

from uuid import uuid4

from peewee import (
    SQL,
    BooleanField,
    CharField,
    DateField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    UUIDField,
)

from appliance.web.crypto import EncryptedModel, EncryptedTextField
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant, User

CONTRACT_STATUSES = ("draft", "active", "suspended", "ended")
RENEWALS = ("auto", "manual")
CHANGE_KINDS = ("set_seats", "add_program", "remove_program", "set_status")
CHANGE_STATES = ("pending", "applied", "cancelled", "failed")
APPLICATION_STATES = ("submitted", "accepted", "declined")


class PricePolicy(BaseModel):
    """A program's published prices from ``effective_from`` on; a later row supersedes it, old contracts keep theirs."""

    program = CharField(max_length=32)
    effective_from = DateField()
    per_seat = BooleanField(default=True)
    monthly_fee_minor = IntegerField(default=0)
    setup_fee_minor = IntegerField(default=0)
    included_conversations = IntegerField(default=0)
    included_messages = IntegerField(default=0)
    overage_conversation_minor = IntegerField(default=0)
    overage_message_minor = IntegerField(default=0)
    published = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("program", "effective_from"), True),)


class Contract(BaseModel):
    account = ForeignKeyField(Tenant, backref="contracts", on_delete="RESTRICT")
    status = CharField(max_length=12, default="draft")
    starts_on = DateField()
    ends_on = DateField()
    renewal = CharField(max_length=8, default="manual")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)


class ContractLine(BaseModel):
    """One program on a contract with its prices frozen from the quote."""

    contract = ForeignKeyField(Contract, backref="lines", on_delete="CASCADE")
    program = CharField(max_length=32)
    seats = IntegerField(default=0)
    per_seat = BooleanField(default=True)
    monthly_fee_minor = IntegerField()
    setup_fee_minor = IntegerField(default=0)
    included_conversations = IntegerField(default=0)
    included_messages = IntegerField(default=0)
    overage_conversation_minor = IntegerField(default=0)
    overage_message_minor = IntegerField(default=0)
    setup_billed = BooleanField(default=False)

    class Meta:
        indexes = ((("contract", "program"), True),)


class SeatHistory(BaseModel):
    """Seats of a program on a contract from a day on: what proration reads."""

    line = ForeignKeyField(ContractLine, backref="history", on_delete="CASCADE")
    effective_on = DateField()
    seats = IntegerField()

    class Meta:
        indexes = ((("line", "effective_on"), True),)


class SeatQuota(BaseModel):
    """Seats of the account's contract a sub-account may hold, set by the account's admins.

    Kept per sub-account rather than per contract, so a renewal keeps the split."""

    tenant = ForeignKeyField(Tenant, unique=True, on_delete="CASCADE")
    seats = IntegerField()
    set_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    set_at = DateTimeField(default=utcnow)


class ScheduledChange(BaseModel):
    """A change that applies itself on ``effective_on`` (the installation's date), exactly once."""

    account = ForeignKeyField(Tenant, backref="scheduled_changes", on_delete="CASCADE")
    contract = ForeignKeyField(Contract, null=True, on_delete="CASCADE")
    kind = CharField(max_length=20)
    program = CharField(max_length=32, null=True)
    value = CharField(max_length=40, null=True)  # seats as digits, or a contract status
    effective_on = DateField(index=True)
    state = CharField(max_length=10, default="pending", index=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    applied_at = DateTimeField(null=True)  # when it really applied (late if the worker was down)
    outcome = TextField(null=True)


class InvoiceCounter(BaseModel):
    """The last invoice number issued; one row, locked while a number is taken, so numbers have no gaps."""

    last_number = IntegerField(default=0)


class Invoice(BaseModel):
    account = ForeignKeyField(Tenant, backref="invoices", on_delete="RESTRICT")
    kind = CharField(max_length=12, default="invoice")  # invoice | credit_note
    number = IntegerField(null=True, unique=True)  # given when issued
    period_start = DateField()
    period_end = DateField()  # exclusive
    status = CharField(max_length=10, default="draft")  # draft | issued
    total_minor = IntegerField(default=0)
    currency = CharField(max_length=3)
    corrects = ForeignKeyField("self", null=True, on_delete="RESTRICT")
    issued_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "kind", "period_start"), False),)


class InvoiceLine(BaseModel):
    invoice = ForeignKeyField(Invoice, backref="lines", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="RESTRICT")  # the sub-account the line is for
    description = CharField(max_length=200)
    quantity = IntegerField()
    unit_price_minor = IntegerField()
    amount_minor = IntegerField()


class Payment(BaseModel):
    account = ForeignKeyField(Tenant, backref="payments", on_delete="RESTRICT")
    amount_minor = IntegerField()
    received_on = DateField()
    reference = CharField(max_length=120)  # the bank transfer's reference
    recorded_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)


class Notification(BaseModel):
    """An in-app notice; ``key`` makes each reminder happen once."""

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    key = CharField(max_length=120, unique=True)
    text = CharField(max_length=300)
    created_at = DateTimeField(default=utcnow)
    read_at = DateTimeField(null=True)
    # Also mailed to the tenant's admins when the installation has a relay (services/mailer.py):
    # pending, sent, failed (mail_error says why) or skipped (made before a relay existed).
    mail_status = CharField(max_length=10, default="pending", constraints=[SQL("DEFAULT 'pending'")])
    mailed_at = DateTimeField(null=True)
    mail_attempts = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])
    mail_next_at = DateTimeField(null=True)  # a claim by one worker, or the next retry
    mail_error = CharField(max_length=200, null=True)


class Application(EncryptedModel, BaseModel):
    """An application for service: from an existing account's admin, or from the public form.

    ``tenant`` is whose keys encrypt it: the account's, or the provider's for a newcomer.
    ``lines`` is "program:seats,..." as the applicant asked; the manager may change it.
    """

    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    account = ForeignKeyField(Tenant, null=True, backref="applications", on_delete="CASCADE")
    company = EncryptedTextField(null=True)
    applicant_name = EncryptedTextField(null=True)
    applicant_email = EncryptedTextField(null=True)
    lines = CharField(max_length=400)
    starts_on = DateField()
    state = CharField(max_length=10, default="submitted", index=True)
    quote_monthly_minor = IntegerField(default=0)
    quote_setup_minor = IntegerField(default=0)
    address_key = CharField(max_length=64, null=True, index=True)  # keyed hash of the sender's address, for limits
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")
    decided_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    decided_at = DateTimeField(null=True)
    contract = ForeignKeyField(Contract, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow, index=True)


class ApplicationComment(EncryptedModel, BaseModel):
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    application = ForeignKeyField(Application, backref="comments", on_delete="CASCADE")
    author = ForeignKeyField(User, null=True, on_delete="SET NULL")
    body = EncryptedTextField()
    created_at = DateTimeField(default=utcnow)
