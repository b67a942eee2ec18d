"""Billing runs, invoices, credit notes, payments and statements.

One invoice per paying account and period: the account pays for its sub-accounts,
whose usage is summed in. Drafts are computed by :mod:`.billing` from the contract's
frozen prices, its seat history and the metered days. Issuing gives the next number
from a single locked counter row in the same transaction, so numbers are sequential
without gaps however many workers issue at once; an issued invoice never changes
(corrections are credit notes).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from peewee import fn

from appliance.web.business.billing import Draft, Segment, draft_invoice
from appliance.web.business.catalogue import terms_of
from appliance.web.business.models import (
    Contract,
    ContractLine,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    Payment,
    SeatHistory,
)
from appliance.web.business.money import check
from appliance.web.models.base import utcnow
from appliance.web.models.metering import UsageDay
from appliance.web.models.tenancy import ACCOUNT, Tenant
from appliance.web.services import ServiceError


def _segments(line: ContractLine, contract: Contract, history: list[tuple[dt.date, int]],
              start: dt.date, end: dt.date) -> list[Segment]:
    """Seats held on ``line`` within ``[start, end)`` as runs of equal seats; ``history`` is
    its (effective_on, seats) points in date order."""
    first, last = max(start, contract.starts_on), min(end, contract.ends_on)
    if first >= last:
        return []
    segments = []
    day = first
    while day < last:
        seats = 0
        for effective_on, value in history:
            if effective_on <= day:
                seats = value
        following = [p for p, _ in history if day < p < last]
        nxt = min(following) if following else last
        segments.append(Segment(day, nxt, seats if line.per_seat else 1))
        day = nxt
    return segments


@dataclass
class PeriodData:
    """Everything a period's invoices read, loaded in a handful of queries for all accounts at once."""

    contracts: dict[int, list[Contract]]  # account id -> contracts overlapping the period
    lines: dict[int, list[ContractLine]]  # contract id -> lines
    history: dict[int, list[tuple[dt.date, int]]]  # line id -> seat points
    usage: dict[int, dict[int, tuple[int, int]]]  # account id -> tenant id -> (conversations, messages)

    @classmethod
    def load(cls, start: dt.date, end: dt.date, account_ids: list[int] | None = None) -> PeriodData:
        query = Contract.select().where(Contract.status.in_(("active", "suspended", "ended")),
                                        Contract.starts_on < end, Contract.ends_on > start)
        if account_ids is not None:
            query = query.where(Contract.account.in_(account_ids))
        contracts: dict[int, list[Contract]] = {}
        for contract in query:
            contracts.setdefault(contract.account_id, []).append(contract)
        contract_ids = [c.id for cs in contracts.values() for c in cs]
        lines: dict[int, list[ContractLine]] = {}
        history: dict[int, list[tuple[dt.date, int]]] = {}
        for chunk in _chunks(contract_ids):
            for line in ContractLine.select().where(ContractLine.contract.in_(chunk)).order_by(ContractLine.id):
                lines.setdefault(line.contract_id, []).append(line)
            for point in (SeatHistory.select(SeatHistory.line, SeatHistory.effective_on, SeatHistory.seats)
                          .join(ContractLine).where(ContractLine.contract.in_(chunk))
                          .order_by(SeatHistory.effective_on)):
                history.setdefault(point.line_id, []).append((point.effective_on, point.seats))
        payer = {}  # tenant id -> the account that pays for it
        for tenant_id, level, parent_id in Tenant.select(Tenant.id, Tenant.level, Tenant.parent).tuples():
            if level == ACCOUNT:
                payer[tenant_id] = tenant_id
            elif parent_id is not None and level > ACCOUNT:
                payer[tenant_id] = parent_id
        usage: dict[int, dict[int, tuple[int, int]]] = {}
        rows = (UsageDay.select(UsageDay.tenant, fn.SUM(UsageDay.conversations),
                                fn.SUM(UsageDay.messages_in + UsageDay.messages_out))
                .where(UsageDay.day >= start, UsageDay.day < end).group_by(UsageDay.tenant))
        for tenant_id, conversations, messages in rows.tuples():
            if tenant_id in payer:
                usage.setdefault(payer[tenant_id], {})[tenant_id] = (int(conversations or 0), int(messages or 0))
        return cls(contracts, lines, history, usage)


RUN_BATCH = 200


def _chunks(ids: list[int], size: int = 500):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def compute(account: Tenant, start: dt.date, end: dt.date, *, discounts: dict[str, int],
            data: PeriodData | None = None) -> tuple[Draft, list]:
    """The draft for ``account`` over ``[start, end)`` and the contract lines whose setup fee it bills."""
    data = data or PeriodData.load(start, end, [account.id])
    terms, segments, setup_lines = {}, {}, []
    for contract in data.contracts.get(account.id, []):
        for line in data.lines.get(contract.id, []):
            segs = _segments(line, contract, data.history.get(line.id, []), start, end)
            if not segs:
                continue
            terms[line.program] = terms_of(line)
            segments[(account.id, line.program)] = segs
            if line.setup_fee_minor and not line.setup_billed:
                setup_lines.append(line)
    draft = draft_invoice(account.id, start, end, terms=terms, segments=segments,
                          usage=data.usage.get(account.id, {}), setup_due={line.program for line in setup_lines},
                          discount_percent=discounts.get(account.partner_level or "", 0))
    return draft, setup_lines


def paying_accounts():
    return Tenant.select().where(Tenant.level == ACCOUNT).order_by(Tenant.id)


def run(start: dt.date, end: dt.date, *, currency: str, discounts: dict[str, int], progress=None) -> list[Invoice]:
    """Draft this period's invoice for every paying account that has none yet (safe to re-run)."""
    made = []
    billed = {row.account_id for row in Invoice.select(Invoice.account).where(
        Invoice.kind == "invoice", Invoice.period_start == start)}
    accounts = [a for a in paying_accounts() if a.id not in billed]
    data = PeriodData.load(start, end)
    database = Invoice._meta.database
    # A transaction per batch of accounts, not per account: each commit is a disk flush.
    for first in range(0, len(accounts), RUN_BATCH):
        with database.atomic():
            for account in accounts[first:first + RUN_BATCH]:
                invoice = _draft_one(account, start, end, currency=currency, discounts=discounts, data=data)
                if invoice is not None:
                    made.append(invoice)
        if progress:
            progress(min(first + RUN_BATCH, len(accounts)), len(accounts))
    return made


def _draft_one(account, start, end, *, currency, discounts, data) -> Invoice | None:
    draft, setup_lines = compute(account, start, end, discounts=discounts, data=data)
    if not draft.lines:
        return None
    invoice = Invoice.create(account=account, period_start=start, period_end=end, currency=currency,
                             total_minor=draft.total)
    InvoiceLine.insert_many([
        {"invoice": invoice.id, "tenant": line.tenant_id, "description": line.description[:200],
         "quantity": line.quantity, "unit_price_minor": line.unit_price, "amount_minor": line.amount}
        for line in draft.lines]).execute()
    if setup_lines:
        ContractLine.update(setup_billed=True).where(ContractLine.id.in_([line.id for line in setup_lines])).execute()
    return invoice


def _next_number() -> int:
    """Take the next invoice number; the caller's transaction holds the counter row until it commits."""
    InvoiceCounter.update(last_number=InvoiceCounter.last_number + 1).where(InvoiceCounter.id == 1).execute()
    return InvoiceCounter.get_by_id(1).last_number


def issue(invoice: Invoice) -> Invoice:
    with Invoice._meta.database.atomic():
        current = Invoice.get_by_id(invoice.id)
        if current.status == "issued":
            return current
        if current.total_minor < 0 and current.kind != "credit_note":
            raise ServiceError("an invoice cannot be negative; issue a credit note instead", 422)
        number = _next_number()
        changed = (Invoice.update(status="issued", number=number, issued_at=utcnow())
                   .where(Invoice.id == invoice.id, Invoice.status == "draft").execute())
        if not changed:
            raise ServiceError("the invoice was issued meanwhile; reload", 409)
    return Invoice.get_by_id(invoice.id)


def credit_note(invoice: Invoice, amount_minor: int, reason: str) -> Invoice:
    """Correct an issued invoice by ``amount_minor`` (positive: what is credited back)."""
    check(amount_minor, "amount_minor")
    if invoice.status != "issued" or invoice.kind != "invoice":
        raise ServiceError("only an issued invoice can be corrected by a credit note", 422)
    credited = -(Invoice.select(fn.COALESCE(fn.SUM(Invoice.total_minor), 0))
                 .where(Invoice.corrects == invoice.id).scalar() or 0)
    if not 0 < amount_minor <= invoice.total_minor - credited:
        raise ServiceError(f"amount_minor must be between 1 and {invoice.total_minor - credited} "
                           "(what is left of the invoice)", 422)
    with Invoice._meta.database.atomic():
        note = Invoice.create(account=invoice.account, kind="credit_note", period_start=invoice.period_start,
                              period_end=invoice.period_end, currency=invoice.currency, total_minor=-amount_minor,
                              corrects=invoice)
        InvoiceLine.create(invoice=note, tenant=invoice.account, description=f"credit: {reason}"[:200], quantity=1,
                           unit_price_minor=-amount_minor, amount_minor=-amount_minor)
        return issue(note)


def record_payment(account: Tenant, amount_minor: int, received_on: dt.date, reference: str, actor_id=None) -> Payment:
    check(amount_minor, "amount_minor")
    if amount_minor <= 0:
        raise ServiceError("amount_minor must be positive", 422)
    if not reference.strip():
        raise ServiceError("reference: the bank transfer's reference is required", 422)
    return Payment.create(account=account, amount_minor=amount_minor, received_on=received_on,
                          reference=reference.strip()[:120], recorded_by=actor_id)


def balance(account: Tenant) -> int:
    """What the account owes now: issued invoices and credit notes less payments."""
    invoiced = (Invoice.select(fn.COALESCE(fn.SUM(Invoice.total_minor), 0))
                .where(Invoice.account == account.id, Invoice.status == "issued").scalar() or 0)
    paid = Payment.select(fn.COALESCE(fn.SUM(Payment.amount_minor), 0)).where(Payment.account == account.id).scalar()
    return int(invoiced) - int(paid or 0)


@dataclass
class Statement:
    account_id: int
    start: dt.date
    end: dt.date
    opening: int
    entries: list[tuple[dt.date, str, int]]  # (date, text, +invoiced / -paid)
    closing: int


def statement(account: Tenant, start: dt.date, end: dt.date) -> Statement:
    """Balance owed: issued invoices and credit notes raise/lower it, payments lower it."""
    def issued_day(inv):
        return inv.issued_at.date()
    issued = list(Invoice.select().where(Invoice.account == account.id, Invoice.status == "issued")
                  .order_by(Invoice.number))
    payments = list(Payment.select().where(Payment.account == account.id))
    opening = (sum(i.total_minor for i in issued if issued_day(i) < start)
               - sum(p.amount_minor for p in payments if p.received_on < start))
    entries = [(issued_day(i), f"{i.kind.replace('_', ' ')} {i.number}", i.total_minor)
               for i in issued if start <= issued_day(i) < end]
    entries += [(p.received_on, f"payment {p.reference}", -p.amount_minor)
                for p in payments if start <= p.received_on < end]
    entries.sort(key=lambda e: e[0])  # stable: same-day documents stay in number order, payments after
    return Statement(account.id, start, end, opening, entries, opening + sum(e[2] for e in entries))


def invoice_csv(invoice: Invoice) -> str:
    """One row per line, amounts in minor units (exact; a spreadsheet divides by 100)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["invoice", "kind", "period_start", "period_end", "tenant", "description", "quantity",
                     "unit_price_minor", "amount_minor", "currency"])
    for line in invoice.lines.order_by(InvoiceLine.id):
        writer.writerow([invoice.number, invoice.kind, invoice.period_start, invoice.period_end, line.tenant.name,
                         line.description, line.quantity, line.unit_price_minor, line.amount_minor, invoice.currency])
    return out.getvalue()
