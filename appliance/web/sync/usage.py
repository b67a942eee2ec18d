"""One day's usage per tenant for the vendor's report: counts only, read from metering.

The counts are the daily metering rows (appliance/web/services/metering.py), the one
source that billing and the customers' usage pages read too; a day not metered yet is
metered first. Days are the installation's local days (UTC unless ``timezone`` says
otherwise). Definitions are metering's; ``messages`` is in + out (notes excluded) and
``seats_used`` the memberships of active users in the tenant itself.

Nothing here reads a message body, a contact or a user's name, so there is nothing
personal to leak.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from peewee import fn

from appliance.core.calendar import day_bounds
from appliance.web.models.metering import UsageDay
from appliance.web.models.tenancy import Tenant
from appliance.web.services.metering import record_day

UTC = ZoneInfo("UTC")


def usage_for_day(day: dt.date, *, include_names: bool = False, tz: ZoneInfo = UTC) -> list[dict]:
    # Rows counted while the day was still running are partial: count the day again.
    computed = UsageDay.select(fn.MIN(UsageDay.computed_at)).where(UsageDay.day == day).scalar()
    if computed is None or computed < day_bounds(day, tz)[1]:
        record_day(day, tz)
    rows = []
    query = (UsageDay.select(UsageDay, Tenant).join(Tenant).where(UsageDay.day == day).order_by(Tenant.id))
    for usage in query:
        tenant = usage.tenant
        if not tenant.is_active and not (usage.conversations or usage.messages_in or usage.messages_out):
            continue
        row = {
            "tenant": tenant.id,
            "conversations": usage.conversations,
            "messages": usage.messages_in + usage.messages_out,
            "active_operators": usage.active_operators,
            "seats_used": usage.seats,
            "programs": [p for p in usage.programs.split(",") if p],
        }
        if include_names:
            row["name"] = tenant.name
        rows.append(row)
    return rows
