"""Invoice arithmetic, free of the database: what a period costs, line by line.

Everything is in minor units (see :mod:`.money`). A period is ``[start, end)`` in whole
days of the installation's time zone. A monthly fee is prorated by days held: a line
whose quantity changes mid-period is cut into segments, the line's total is computed once
for the whole period and then split across the segments, so the segments always sum to
the total and an unchanged line costs exactly its monthly fee.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from appliance.web.business.money import check, percent_off, scale, split


@dataclass(frozen=True)
class Terms:
    """One program's prices on a contract, frozen when the contract was made."""

    program: str
    monthly_fee: int  # per seat when per_seat, else flat
    per_seat: bool = True
    setup_fee: int = 0
    included_conversations: int = 0
    included_messages: int = 0
    overage_conversation: int = 0  # per conversation beyond the included ones
    overage_message: int = 0

    def __post_init__(self):
        for name in ("monthly_fee", "setup_fee", "overage_conversation", "overage_message"):
            if check(getattr(self, name), name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True)
class Segment:
    """``quantity`` seats (or 1 for a flat fee) held from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: dt.date
    end: dt.date
    quantity: int

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class Line:
    tenant_id: int  # the account itself or a sub-account, for the breakdown
    description: str
    quantity: int
    unit_price: int
    amount: int


@dataclass
class Draft:
    account_id: int
    start: dt.date
    end: dt.date
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def prorate(fee: int, segments: list[Segment], period_start: dt.date, period_end: dt.date) -> list[int]:
    """The fee for each segment; their sum is the fee over the days held, exactly."""
    period_days = (period_end - period_start).days
    if period_days <= 0:
        raise ValueError("a billing period must last at least one day")
    for seg in segments:
        if seg.start < period_start or seg.end > period_end or seg.days < 0 or seg.quantity < 0:
            raise ValueError(f"segment {seg} lies outside the period {period_start}..{period_end}")
    weights = [seg.quantity * seg.days for seg in segments]
    held = sum(weights)
    if held == 0:
        return [0] * len(segments)
    total = scale(fee, held, period_days)
    return split(total, weights)


def overage(used: int, included: int, rate: int) -> tuple[int, int]:
    """``(units beyond the included ones, their price)``."""
    beyond = max(0, used - included)
    return beyond, beyond * rate


def draft_invoice(account_id: int, start: dt.date, end: dt.date, *, terms: dict[str, Terms],
                  segments: dict[tuple[int, str], list[Segment]], usage: dict[int, tuple[int, int]],
                  setup_due: set[str] = frozenset(), discount_percent: int = 0) -> Draft:
    """One account's invoice for ``[start, end)``.

    ``segments`` maps (tenant id, program) to the seats held; ``usage`` maps tenant id to
    (conversations, messages) counted by metering. Included quantities are per account
    (the parent pays), so usage is summed before the included part is taken off.
    """
    draft = Draft(account_id, start, end)
    for program in sorted(setup_due):
        fee = terms[program].setup_fee
        if fee:
            draft.lines.append(Line(account_id, f"{program}: setup", 1, fee, fee))
    for (tenant_id, program), segs in sorted(segments.items()):
        term = terms[program]
        amounts = prorate(term.monthly_fee, segs, start, end)
        for seg, amount in zip(segs, amounts, strict=True):
            if seg.quantity and seg.days:
                unit = "seats" if term.per_seat else "flat"
                draft.lines.append(Line(tenant_id, f"{program}: {seg.quantity} {unit}, {seg.start}..{seg.end}",
                                        seg.quantity, term.monthly_fee, amount))
    conversations = sum(c for c, _ in usage.values())
    messages = sum(m for _, m in usage.values())
    for program in sorted(terms):
        term = terms[program]
        if not any(p == program for _, p in segments):
            continue
        for label, used, included, rate in (
            ("conversations", conversations, term.included_conversations, term.overage_conversation),
            ("messages", messages, term.included_messages, term.overage_message),
        ):
            if rate:
                beyond, amount = overage(used, included, rate)
                if beyond:
                    draft.lines.append(Line(account_id, f"{program}: {beyond} {label} beyond {included} included",
                                            beyond, rate, amount))
    if discount_percent:
        discount = percent_off(draft.total, discount_percent)
        if discount:
            draft.lines.append(Line(account_id, f"partner discount {discount_percent}%", 1, -discount, -discount))
    return draft


def month_bounds(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar month containing ``day`` as ``[first, first of next)``."""
    first = day.replace(day=1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    return first, nxt
