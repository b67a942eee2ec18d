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


def relative(value: dt.datetime | None, tz: ZoneInfo, now: dt.datetime | None = None) -> str:
    """A stored (naive UTC) time as people read it in a list, in the installation's zone:
    "now", "5 min", "14:02" (today), "yesterday 14:02", "17 Apr" (this year), "17 Apr 2029";
    future times (a snooze) as "in 40 min", "at 14:02", "tomorrow 09:00", "17 Apr 09:00"."""
    if value is None:
        return ""
    now = (now or clock.now()).astimezone(tz)
    local = value.replace(tzinfo=dt.UTC).astimezone(tz)
    seconds = (now - local).total_seconds()
    days = (local.date() - now.date()).days
    clock_time = local.strftime("%H:%M")
    if 0 <= seconds < 60:
        return "now"
    if 0 < seconds < 3600:
        return f"{int(seconds // 60)} min"
    if -3600 < seconds < 0:
        return f"in {max(1, int(-seconds // 60))} min"
    if days == 0:
        return clock_time if seconds > 0 else f"at {clock_time}"
    if days == -1:
        return f"yesterday {clock_time}"
    if days == 1:
        return f"tomorrow {clock_time}"
    date = f"{local.day} {local.strftime('%b')}"
    if seconds < 0:
        return f"{date}{'' if local.year == now.year else ' ' + str(local.year)} {clock_time}"
    return date if local.year == now.year else f"{date} {local.year}"


def local_time(value: dt.datetime | None, tz: ZoneInfo) -> str:
    """A stored (naive UTC) time in full, in the installation's zone (for a title or a form)."""
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
