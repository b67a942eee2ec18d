"""Card numbers (PANs) in message bodies, masked per tenant.

Customers paste card numbers into chats. A tenant that turns on ``mask_card_numbers``
(it applies to its sub-accounts too) shows them to agents as ``•••• 1234``; roles from
``pan_reveal_role`` up may ask for the full text, and each time they do it is audited.
Only what the viewer sees is masked: the stored message is unchanged (and encrypted).

A PAN here is 13 to 19 digits, optionally grouped by single spaces or dashes, that
passes the Luhn check, so order numbers and phone numbers are left alone.
"""

from __future__ import annotations

import re

from appliance.web.models.audit import record
from appliance.web.models.tenancy import Tenant, role_rank

_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask(text: str | None) -> str | None:
    """``text`` with every card number replaced by its last four digits."""
    if not text:
        return text

    def replace(match):
        digits = re.sub(r"\D", "", match.group())
        return f"•••• {digits[-4:]}" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group()

    return _CANDIDATE.sub(replace, text)


def masking_on(tenant: Tenant) -> bool:
    """Whether ``tenant`` or an account above it masks card numbers."""
    ids = tenant.ancestor_ids() or [tenant.id]  # the path lists the tenant itself too
    return Tenant.select().where(Tenant.id.in_(ids), Tenant.mask_card_numbers == True).exists()


def may_reveal(role: str | None, setting: str) -> bool:
    return role_rank(role) >= role_rank(setting)


def audit_reveal(*, actor_id, tenant_id, conversation_id, messages: int) -> None:
    record("message.reveal_card_numbers", actor_id=actor_id, tenant_id=tenant_id,
           target=f"conversation:{conversation_id}", messages=messages)
