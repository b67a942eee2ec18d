"""The provider's price list: one dated price policy per program and day it changed."""

from __future__ import annotations

import datetime as dt

from appliance.core.licence.programs import KNOWN_PROGRAMS
from appliance.web.business.billing import Terms
from appliance.web.business.models import PricePolicy
from appliance.web.business.money import check
from appliance.web.services import ServiceError

MONEY_FIELDS = ("monthly_fee_minor", "setup_fee_minor", "overage_conversation_minor", "overage_message_minor")
COUNT_FIELDS = ("included_conversations", "included_messages")


def publish(program: str, effective_from: dt.date, *, per_seat: bool = True, **prices) -> PricePolicy:
    """Publish (or correct, for the same day) a program's prices from ``effective_from`` on."""
    if program not in KNOWN_PROGRAMS:
        raise ServiceError(f"program: unknown program {program!r}; use one of {', '.join(sorted(KNOWN_PROGRAMS))}", 422)
    values = {}
    for name in MONEY_FIELDS + COUNT_FIELDS:
        value = check(prices.pop(name, 0), name)
        if value < 0:
            raise ServiceError(f"{name} must not be negative", 422)
        values[name] = value
    if prices:
        raise ServiceError(f"unknown price fields: {', '.join(sorted(prices))}", 422)
    row = PricePolicy.get_or_none(PricePolicy.program == program, PricePolicy.effective_from == effective_from)
    if row is None:
        return PricePolicy.create(program=program, effective_from=effective_from, per_seat=per_seat, **values)
    PricePolicy.update(per_seat=per_seat, **values).where(PricePolicy.id == row.id).execute()
    return PricePolicy.get_by_id(row.id)


def policy_on(program: str, day: dt.date) -> PricePolicy | None:
    """The prices in effect for ``program`` on ``day`` (the latest policy dated on or before it)."""
    return (PricePolicy.select()
            .where(PricePolicy.program == program, PricePolicy.effective_from <= day, PricePolicy.published == True)
            .order_by(PricePolicy.effective_from.desc()).first())


def price_list(day: dt.date) -> list[PricePolicy]:
    return [p for p in (policy_on(program, day) for program in sorted(KNOWN_PROGRAMS)) if p is not None]


def terms_of(row) -> Terms:
    """Billing terms from a price policy or a contract line (both carry the same columns)."""
    return Terms(program=row.program, monthly_fee=row.monthly_fee_minor, per_seat=row.per_seat,
                 setup_fee=row.setup_fee_minor, included_conversations=row.included_conversations,
                 included_messages=row.included_messages, overage_conversation=row.overage_conversation_minor,
                 overage_message=row.overage_message_minor)


def quote(lines: list[tuple[str, int]], day: dt.date) -> dict:
    """What ``lines`` of (program, seats) cost per month and once, at ``day``'s prices."""
    out, monthly, setup = [], 0, 0
    for program, seats in lines:
        policy = policy_on(program, day)
        if policy is None:
            raise ServiceError(f"program {program!r} has no published price on {day}; publish one first", 422)
        fee = policy.monthly_fee_minor * (seats if policy.per_seat else 1)
        monthly += fee
        setup += policy.setup_fee_minor
        out.append({"program": program, "seats": seats, "monthly_minor": fee, "setup_minor": policy.setup_fee_minor})
    return {"lines": out, "monthly_minor": monthly, "setup_minor": setup}
