"""What an account's admins see of their usage: metered days by sub-account, as rows, CSV and a chart."""

from __future__ import annotations

import datetime as dt

from appliance.web.export import csv_text, stacked_bars_svg
from appliance.web.models.metering import UsageDay
from appliance.web.models.tenancy import Tenant

CSV_COLUMNS = ("day", "tenant", "conversations", "messages_in", "messages_out", "active_operators", "seats",
               "programs")


def subtree(tenant: Tenant) -> list[Tenant]:
    return list(Tenant.select().where(Tenant.path.startswith(tenant.path)).order_by(Tenant.path))


def rows(tenant: Tenant, start: dt.date, end: dt.date, only: Tenant | None = None) -> list[UsageDay]:
    """Metered days in ``[start, end)`` for ``tenant`` and its sub-accounts (or ``only`` one of them)."""
    ids = [only.id] if only is not None else [t.id for t in subtree(tenant)]
    return list(UsageDay.select(UsageDay, Tenant).join(Tenant)
                .where(UsageDay.tenant.in_(ids), UsageDay.day >= start, UsageDay.day < end)
                .order_by(UsageDay.day, Tenant.path))


def daily_totals(usage: list[UsageDay], start: dt.date, end: dt.date) -> list[tuple[dt.date, int, int]]:
    """(day, messages in, messages out) for every day of the range, zero where nothing was metered."""
    totals = {start + dt.timedelta(days=n): [0, 0] for n in range((end - start).days)}
    for row in usage:
        day = row.day if isinstance(row.day, dt.date) else dt.date.fromisoformat(row.day)
        totals[day][0] += row.messages_in
        totals[day][1] += row.messages_out
    return [(day, a, b) for day, (a, b) in sorted(totals.items())]


def as_csv(usage: list[UsageDay], *, bom: bool = False) -> str:
    """RFC 4180; a UTF-8 BOM (``bom``) makes Excel read the names right."""
    return csv_text(CSV_COLUMNS, ([row.day, row.tenant.name, row.conversations, row.messages_in, row.messages_out,
                                   row.active_operators, row.seats, row.programs] for row in usage), bom=bom)


def bar_chart_svg(series: list[tuple[dt.date, int, int]], *, width: int = 720, height: int = 180) -> str:
    """Stacked bars of messages in and out per day, drawn on the server (no script, no CDN)."""
    return stacked_bars_svg(series, title="Messages per day: in and out", width=width, height=height)
