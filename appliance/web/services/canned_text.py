"""Variables in canned answers: ``{{contact.name}}``, ``{{agent.name}}`` and a few more.

A fixed table of names replaced by plain values, never a template engine: the answer's
text is written by tenant staff and the values come from contacts (whatever a visitor
typed), so neither side may run code or reach anything beyond these values. A value
containing ``{{...}}`` is inserted as it is, never substituted again.
"""

from __future__ import annotations

import re

VARIABLE = re.compile(r"\{\{\s*([a-z_]+\.[a-z_]+)\s*\}\}")
NAMES = ("contact.name", "contact.first_name", "contact.email", "contact.phone", "agent.name",
         "agent.first_name", "agent.email", "tenant.name")


def unknown_names(text: str) -> list[str]:
    """Variables in ``text`` that :func:`fill` would not know (a typo to report)."""
    return sorted({name for name in VARIABLE.findall(text or "") if name not in NAMES})


def _first(name: str | None) -> str:
    return (name or "").strip().split(" ")[0] if name else ""


def values_for(*, contact=None, agent=None, tenant=None) -> dict[str, str]:
    """The values for one reply: the conversation's contact, the replying user, the tenant."""
    contact_name = (getattr(contact, "name", None) or "").strip()
    agent_name = (getattr(agent, "name", None) or "").strip()
    return {
        "contact.name": contact_name,
        "contact.first_name": _first(contact_name),
        "contact.email": getattr(contact, "email", None) or "",
        "contact.phone": getattr(contact, "phone", None) or "",
        "agent.name": agent_name,
        "agent.first_name": _first(agent_name),
        "agent.email": getattr(agent, "email", None) or "",
        "tenant.name": getattr(tenant, "name", None) or "",
    }


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each known variable replaced in one pass; unknown ones stay as written."""
    return VARIABLE.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), text or "")
