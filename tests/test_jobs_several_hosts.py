"""The worker's daily rows when two app hosts' workers compute the same day at the same
moment (maximal: one worker per app host, one database): both rounds succeed and each
tenant's day is there once."""

from __future__ import annotations

import threading

from appliance.core.calendar import today, zone
from appliance.web.models.metering import UsageDay
from appliance.web.models.reports import ReportDay
from appliance.web.services import metering, reports


def _two_hosts_at_once(app, fn, rounds=5):
    database = app.extensions["database"]
    errors, barrier = [], threading.Barrier(2)

    def host():
        with app.app_context(), database.connection_context():
            for _ in range(rounds):
                barrier.wait(10)
                try:
                    fn()
                except Exception as exc:  # recorded, so the assertion shows what a host got
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=host) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_two_hosts_metering_the_same_day_both_succeed_once_each(app, world):
    tz = zone(app.extensions["appliance_instance"].settings)
    day = today(tz)
    errors = _two_hosts_at_once(app, lambda: metering.record_day(day, tz))
    assert errors == []
    with app.app_context():
        tenants = [row.tenant_id for row in UsageDay.select().where(UsageDay.day == day)]
    assert tenants and len(tenants) == len(set(tenants))


def test_two_hosts_computing_the_same_report_day_both_succeed(app, world):
    tz = zone(app.extensions["appliance_instance"].settings)
    day = today(tz)
    errors = _two_hosts_at_once(app, lambda: reports.record_day(day, tz))
    assert errors == []
    with app.app_context():
        keys = [(r.tenant_id, r.dimension, r.key) for r in ReportDay.select().where(ReportDay.day == day)]
    assert len(keys) == len(set(keys))
