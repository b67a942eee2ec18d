"""The installation's calendar: local days as UTC instants, and today's local date.

Timestamps in the database are naive UTC; the business works in the installation's
local days (a day in spring may last 23 hours). Everything that turns one into the
other goes through here.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.core import clock


def zone(settings: dict) -> ZoneInfo:
    name = settings.get("timezone") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"config.yml: timezone {name!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc


def day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """``[local midnight of day, local midnight of the next day)`` as naive UTC."""
    def utc(d):
        return dt.datetime.combine(d, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)
    return utc(day), utc(day + dt.timedelta(days=1))


def today(tz: ZoneInfo) -> dt.date:
    return clock.now().astimezone(tz).date()
