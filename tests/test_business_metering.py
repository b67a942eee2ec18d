"""Metering against hand-counted fixtures: local days in the installation's time zone,
across midnight and both daylight-saving changes, recomputed idempotently."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.core.calendar import day_bounds, zone
from appliance.web.models.metering import UsageDay
from appliance.web.services import contacts, conversations, metering

BERLIN = zone({"timezone": "Europe/Berlin"})


def at(clock, y, mo, d, h, mi):
    clock.set(dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC))


def usage(tenant, day):
    row = UsageDay.get_or_none(UsageDay.tenant == tenant.id, UsageDay.day == day)
    return None if row is None else (row.conversations, row.messages_in, row.messages_out, row.active_operators)


def test_local_days_last_23_and_25_hours_at_the_changes():
    spring = day_bounds(dt.date(2031, 3, 30), BERLIN)
    autumn = day_bounds(dt.date(2031, 10, 26), BERLIN)
    assert spring == (dt.datetime(2031, 3, 29, 23, 0), dt.datetime(2031, 3, 30, 22, 0))
    assert autumn[1] - autumn[0] == dt.timedelta(hours=25)


def test_unknown_time_zone_names_the_setting():
    with pytest.raises(ValueError, match="timezone 'Mars/Olympus'"):
        zone({"timezone": "Mars/Olympus"})


def test_messages_count_on_the_local_day_across_midnight_and_dst(world, clock):
    tenant = world.tenants["A1"]
    channel = world.objects["A1"]["channel"]
    agent = world.users[("A1", "agent")]
    contact = contacts.create_contact(tenant, name="Night Owl")
    # Saturday 29 March 2031, 23:59 in Berlin (CET, UTC+1): still the 29th there.
    at(clock, 2031, 3, 29, 22, 59)
    conv = conversations.start_conversation(channel, tenant, contact, "late on Saturday")
    # 00:01 on Sunday the 30th in Berlin, an hour before the clocks go forward.
    at(clock, 2031, 3, 29, 23, 1)
    conversations.add_message(conv, "out", "answer after midnight", author=agent.id)
    conversations.add_message(conv, "note", "internal notes are not metered", author=agent.id)
    # 23:59 on the 30th (CEST, UTC+2) and 00:01 on Monday the 31st.
    at(clock, 2031, 3, 30, 21, 59)
    conversations.add_message(conv, "in", "still Sunday")
    at(clock, 2031, 3, 30, 22, 1)
    second = conversations.start_conversation(channel, tenant, contact, "Monday already")
    conversations.assign(second, agent.id)

    for day in (dt.date(2031, 3, 29), dt.date(2031, 3, 30), dt.date(2031, 3, 31)):
        metering.record_day(day, BERLIN)
    # (conversations started, messages in, messages out, active operators) — counted by hand above
    assert usage(tenant, dt.date(2031, 3, 29)) == (1, 1, 0, 0)
    assert usage(tenant, dt.date(2031, 3, 30)) == (0, 1, 1, 1)
    assert usage(tenant, dt.date(2031, 3, 31)) == (1, 1, 0, 0)  # being assigned is not work
    # In UTC the same messages fall on other days: the zone matters.
    metering.record_day(dt.date(2031, 3, 29), zone({"timezone": "UTC"}))
    assert usage(tenant, dt.date(2031, 3, 29)) == (1, 1, 1, 1)


def test_recomputing_a_day_replaces_its_rows(world, clock):
    tenant = world.tenants["B1"]
    day = dt.date(2031, 10, 26)  # 25 hours long in Berlin
    at(clock, 2031, 10, 25, 22, 30)  # 00:30 local (CEST)
    contact = contacts.create_contact(tenant, name="Early")
    conv = conversations.start_conversation(world.objects["B1"]["channel"], tenant, contact, "first")
    metering.record_day(day, BERLIN)
    at(clock, 2031, 10, 26, 22, 59)  # 23:59 local (CET): the 25th hour
    conversations.add_message(conv, "in", "last of the long day")
    metering.record_day(day, BERLIN)
    metering.record_day(day, BERLIN)
    assert UsageDay.select().where(UsageDay.tenant == tenant.id, UsageDay.day == day).count() == 1
    assert usage(tenant, day) == (1, 2, 0, 0)


def test_the_job_catches_up_missed_days(world, clock, app):
    app.extensions["appliance_instance"].settings["timezone"] = "Europe/Berlin"
    at(clock, 2031, 5, 10, 12, 0)
    metering.metering_job(app)
    assert UsageDay.select(UsageDay.day).where(UsageDay.day == dt.date(2031, 5, 10)).exists()
    at(clock, 2031, 5, 14, 12, 0)  # the worker was down for three days
    metering.metering_job(app)
    days = {r.day for r in UsageDay.select(UsageDay.day).distinct()}
    assert {dt.date(2031, 5, d) for d in range(10, 15)} <= {d if isinstance(d, dt.date) else
                                                            dt.date.fromisoformat(d) for d in days}
    tenants = UsageDay.select().where(UsageDay.day == dt.date(2031, 5, 12)).count()
    assert tenants == len(world.tenants)
