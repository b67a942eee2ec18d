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


def _segments(line: ContractLine, start: dt.date, end: dt.date) -> list[Segment]:
    """Seats held on ``line`` day by day within ``[start, end)``, as runs of equal seats."""
    history = list(SeatHistory.select().where(SeatHistory.line == line.id).order_by(SeatHistory.effective_on))
    contract = line.contract
    first, last = max(start, contract.starts_on), min(end, contract.ends_on)
    if first >= last:
        return []
    points = [(h.effective_on, h.seats) for h in history]
    segments = []
    day = first
    while day < last:
        seats = 0
        for effective_on, value in points:
            if effective_on <= day:
                seats = value
        following = [p for p, _ in points if day < p < last]
        nxt = min(following) if following else last
        quantity = seats if line.per_seat else 1
        segments.append(Segment(day, nxt, quantity))
        day = nxt
    return segments


def _usage(account: Tenant, start: dt.date, end: dt.date) -> dict[int, tuple[int, int]]:
    subtree = Tenant.select(Tenant.id).where(Tenant.path.startswith(account.path))
    rows = (UsageDay.select(UsageDay.tenant, fn.SUM(UsageDay.conversations),
                            fn.SUM(UsageDay.messages_in + UsageDay.messages_out))
            .where(UsageDay.tenant.in_(subtree), UsageDay.day >= start, UsageDay.day < end)
            .group_by(UsageDay.tenant))
    return {tenant: (int(c or 0), int(m or 0)) for tenant, c, m in rows.tuples()}


def compute(account: Tenant, start: dt.date, end: dt.date, *, discounts: dict[str, int]) -> tuple[Draft, list]:
    """The draft for ``account`` over ``[start, end)`` and the contract lines whose setup fee it bills."""
    contracts = list(Contract.select().where(
        Contract.account == account.id, Contract.status.in_(("active", "suspended", "ended")),
        Contract.starts_on < end, Contract.ends_on > start))
    terms, segments, setup_lines = {}, {}, []
    for contract in contracts:
        for line in contract.lines:
            segs = _segments(line, start, end)
            if not segs:
                continue
            terms[line.program] = terms_of(line)
            segments[(account.id, line.program)] = segs
            if line.setup_fee_minor and not line.setup_billed:
                setup_lines.append(line)
    draft = draft_invoice(account.id, start, end, terms=terms, segments=segments, usage=_usage(account, start, end),
                          setup_due={line.program for line in setup_lines},
                          discount_percent=discounts.get(account.partner_level or "", 0))
    return draft, setup_lines


def paying_accounts():
    return Tenant.select().where(Tenant.level == ACCOUNT).order_by(Tenant.id)


def run(start: dt.date, end: dt.date, *, currency: str, discounts: dict[str, int], progress=None) -> list[Invoice]:
    """Draft this period's invoice for every paying account that has none yet (safe to re-run)."""
    made = []
    accounts = list(paying_accounts())
    for n, account in enumerate(accounts, 1):
        if Invoice.select().where(Invoice.account == account.id, Invoice.kind == "invoice",
                                  Invoice.period_start == start).exists():
            continue
        draft, setup_lines = compute(account, start, end, discounts=discounts)
        if not draft.lines:
            continue
        with Invoice._meta.database.atomic():
            invoice = Invoice.create(account=account, period_start=start, period_end=end, currency=currency,
                                     total_minor=draft.total)
            InvoiceLine.insert_many([
                {"invoice": invoice.id, "tenant": line.tenant_id, "description": line.description[:200],
                 "quantity": line.quantity, "unit_price_minor": line.unit_price, "amount_minor": line.amount}
                for line in draft.lines]).execute()
            if setup_lines:
                ContractLine.update(setup_billed=True).where(
                    ContractLine.id.in_([line.id for line in setup_lines])).execute()
        made.append(invoice)
        if progress and n % 500 == 0:
            progress(n, len(accounts))
    return made


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
