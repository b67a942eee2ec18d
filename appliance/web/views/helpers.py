"""Small pieces the UI blueprints share: form parsing, ownership checks, template helpers."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, g, request

from appliance.core import calendar, clock
from appliance.web.access import object_or_404
from appliance.web.auth import tenant_view  # noqa: F401  (re-exported for the UI blueprints)
from appliance.web.models.tenancy import Tenant, role_rank


def owned_or_404(model, object_id: int, tenant: Tenant, minimum: str = "agent"):
    """An object of the tenant in the URL: the access rules first, then the owner.

    The owner check matters because a parent's staff also reach the sub-accounts'
    objects; a URL mixing tenant A and an object of B must not work either way.
    """
    obj = object_or_404(g.principal, model, object_id, minimum)
    if obj.tenant_id != tenant.id:
        abort(404)
    return obj


def form_bool(name: str) -> bool:
    return request.form.get(name) in ("1", "on", "true", "yes")


def form_text(name: str, limit: int = 20_000) -> str:
    """Form text, cut at ``limit``: the services apply the real, smaller limits."""
    return (request.form.get(name) or "")[:limit]


def arg_id(name: str) -> int | None:
    """A positive integer query argument, or None for anything else (never a 500)."""
    raw = request.args.get(name, "")
    if raw.isdigit() and 0 < len(raw) <= 18 and int(raw) > 0:
        return int(raw)
    return None


def can(minimum: str) -> bool:
    return role_rank(g.get("role")) >= role_rank(minimum)


def _ui_context():
    return {"can": can}


def when(value: dt.datetime | None) -> str:
    """Compact UTC timestamps: time of day for today, the date otherwise."""
    if value is None:
        return ""
    now = clock.naive_now()
    if value.date() == now.date():
        return value.strftime("%H:%M")
    if value.year == now.year:
        return value.strftime("%d %b %H:%M")
    return value.strftime("%Y-%m-%d")


def full_time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def local_zone():
    return calendar.zone(current_app.extensions["appliance_instance"].settings)


def ago(value: dt.datetime | None) -> str:
    """Relative, in the installation's time zone: "5 min", "yesterday 14:02", "17 Apr"."""
    return calendar.relative(value, local_zone())


def local_time(value: dt.datetime | None) -> str:
    return calendar.local_time(value, local_zone())


def filesize(size: int | None) -> str:
    size = int(size or 0)
    for unit in ("bytes", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def install(blueprint: Blueprint) -> None:
    """App-wide template helpers, attached through one UI blueprint (the inbox)."""
    blueprint.app_context_processor(_ui_context)
    blueprint.add_app_template_filter(when, "when")
    blueprint.add_app_template_filter(full_time, "full_time")
    blueprint.add_app_template_filter(filesize, "filesize")
    blueprint.add_app_template_filter(ago, "ago")
    blueprint.add_app_template_filter(local_time, "local_time")
