"""What an account's admins see of their usage: metered days by sub-account, as rows, CSV and a chart."""

from __future__ import annotations

import csv
import datetime as dt
import io

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
    """RFC 4180 (CRLF line ends, quoted where needed); a UTF-8 BOM makes Excel read the names right."""
    out = io.StringIO()
    if bom:
        out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in usage:
        writer.writerow([row.day, _safe_cell(row.tenant.name), row.conversations, row.messages_in, row.messages_out,
                         row.active_operators, row.seats, row.programs])
    return out.getvalue()


def _safe_cell(text: str) -> str:
    """Spreadsheets run a cell starting with = + - @ as a formula; a leading quote keeps it text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def bar_chart_svg(series: list[tuple[dt.date, int, int]], *, width: int = 720, height: int = 180) -> str:
    """Stacked bars of messages in and out per day, drawn on the server (no script, no CDN)."""
    if not series:
        return ""
    top = max((a + b for _, a, b in series), default=0) or 1
    gap, left, bottom = 2, 36, 20
    bar = max(1, (width - left) // len(series) - gap)
    plot = height - bottom - 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="100%" aria-label="Messages per day: in and out">',
             f'<text x="0" y="12" class="axis">{top}</text><text x="0" y="{plot + 6}" class="axis">0</text>']
    for n, (day, inbound, outbound) in enumerate(series):
        x = left + n * (bar + gap)
        h_in, h_out = plot * inbound // top, plot * outbound // top
        y_in = plot + 6 - h_in
        parts.append(f'<g><title>{day}: {inbound} in, {outbound} out</title>'
                     f'<rect class="in" x="{x}" y="{y_in}" width="{bar}" height="{h_in}"/>'
                     f'<rect class="out" x="{x}" y="{y_in - h_out}" width="{bar}" height="{h_out}"/></g>')
        if n % 7 == 0:
            parts.append(f'<text x="{x}" y="{height - 4}" class="axis">{day:%d %b}</text>')
    parts.append("</svg>")
    return "".join(parts)
