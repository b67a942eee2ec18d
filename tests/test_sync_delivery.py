"""Reports reach a real receiver on 127.0.0.1 exactly once, whatever goes wrong on the way."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import dataclass

import pytest

from appliance.core.identity import load_identity
from tests.helpers import FakeClock
from tests.sync_support import Receiver, ReceiverProcess, free_port


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request):
    """Both engines: the claim works differently on each (see appliance/web/sync/outbox.py)."""
    if request.param == "sqlite":
        return "sqlite:///appliance.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path / "vendor.db")
    yield r
    r.stop()


@dataclass
class Site:
    instance: object
    identity: object
    clock: FakeClock
    database: object


def make_site(app, clock, vendor_url, *, at=dt.time(0, 30), **sync_settings) -> Site:
    from appliance.web.sync import service

    instance = app.extensions["appliance_instance"]
    settings = {"connect_timeout": 1, "read_timeout": 2, "backoff_base": 60, "backoff_max": 3600}
    settings.update(sync_settings, vendor_url=vendor_url)
    instance.settings["sync"].update(settings)
    # Early in a UTC day (the next one: time only goes forward): tests move the clock by
    # up to a day, and crossing midnight would (rightly) queue one more day's report.
    # Sync is turned on that day, so only its yesterday is due.
    clock.set(dt.datetime.combine(clock().date() + dt.timedelta(days=1), at, tzinfo=dt.UTC))
    service.set_enabled(instance, True, via="test")
    return Site(instance, load_identity(instance), clock, app.extensions["database"])


def queue_days(site: Site, n: int) -> list[str]:
    from appliance.web.sync import service

    today = site.clock().date()
    ids = []
    for k in range(n, 0, -1):
        day = today - dt.timedelta(days=k)
        assert service.enqueue_day(site.instance, day, identity=site.identity, now=site.clock.naive())
    from appliance.web.models.sync import SyncOutbox

    ids = [r.report_id for r in SyncOutbox.select().order_by(SyncOutbox.report_day)]
    assert len(ids) == n
    return ids


def queue_days_before(site: Site, n: int, before: int) -> list[str]:
    """Queue ``n`` more days ending just before the ``before`` days already queued."""
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    today = site.clock().date()
    days = [today - dt.timedelta(days=before + k) for k in range(n, 0, -1)]
    for day in days:
        assert service.enqueue_day(site.instance, day, identity=site.identity, now=site.clock.naive())
    return [r.report_id for r in SyncOutbox.select().where(SyncOutbox.report_day.in_(days))]


def run(site: Site):
    from appliance.web.sync import service

    return service.run_once(site.instance)  # reads the time through the appliance's clock


def outbox_states() -> dict:
    from appliance.web.models.sync import SyncOutbox

    out = {}
    for row in SyncOutbox.select():
        out[row.state] = out.get(row.state, 0) + 1
    return out


def stored_ids(receiver: Receiver) -> list[str]:
    from appliance.vendor_tools.receiver.models import Report

    return receiver.query(lambda: [r.report_id for r in Report.select(Report.report_id)])


def test_reports_arrive_exactly_once_despite_500s_lost_answers_and_timeouts(app, receiver, clock):
    site = make_site(app, clock, receiver.url)
    expected = queue_days(site, 40)  # two batches: 31 + 9
    receiver.front.faults = ["500", "lost", ("slow", 3), "500"]
    for _ in range(10):
        result = run(site)
        if outbox_states() == {"sent": 40}:
            break
        assert result.status == "retry"
        site.clock.advance(hours=2)
    assert outbox_states() == {"sent": 40}
    stored = stored_ids(receiver)
    assert sorted(stored) == sorted(expected)  # nothing lost, nothing twice

    posts = receiver.front.posts()
    keys_by_batch: dict = {}
    for post in posts:
        body = json.loads(post.body)
        ids = tuple(sorted(r["report"]["report_id"] for r in body["reports"]))
        keys_by_batch.setdefault(ids, set()).add(post.key)
    # The first batch was tried five times, always under one idempotency key.
    assert sorted(len(ids) for ids in keys_by_batch) == [9, 31]
    assert all(len(keys) == 1 for keys in keys_by_batch.values())
    assert len(posts) == 6  # 4 faults + 2 successes: one request per batch, not per report


def test_connection_refused_keeps_everything_for_later(app, receiver, clock):
    closed = f"http://127.0.0.1:{free_port()}"
    site = make_site(app, clock, closed)
    expected = queue_days(site, 3)
    result = run(site)
    assert result.status == "retry"
    from appliance.web.models.sync import SyncOutbox

    rows = list(SyncOutbox.select())
    assert {r.state for r in rows} == {"pending"}
    assert all(r.attempts == 1 and "cannot reach" in r.last_error for r in rows)
    first_retry = rows[0].next_attempt_at
    assert dt.timedelta(seconds=30) <= first_retry - site.clock.naive() <= dt.timedelta(seconds=60)

    # Not due yet: nothing is sent even though the vendor is back.
    site.instance.settings["sync"]["vendor_url"] = receiver.url
    assert run(site).status == "idle"
    assert receiver.front.posts() == []
    site.clock.advance(minutes=2)
    assert run(site).status == "sent"
    assert sorted(stored_ids(receiver)) == sorted(expected)


@pytest.fixture
def processes():
    started = []
    yield started
    for proc in started:
        proc.kill()


def test_receiver_killed_mid_batch_loses_and_duplicates_nothing(app, tmp_path, processes, clock, runner):
    from appliance.cli import main

    vendor_db = tmp_path / "vendor-proc.db"
    pub = tmp_path / "installation.pub"
    instance = app.extensions["appliance_instance"]
    identity = load_identity(instance)
    pub.write_text(identity.public_key_pem())
    registered = runner.invoke(
        main,
        ["vendor", "register-installation", "--db", str(vendor_db), "--id", identity.installation_id,
         "--public-key", str(pub), "--label", "Test site"],
    )
    assert registered.exit_code == 0, registered.output

    port = free_port()
    slow = ReceiverProcess(vendor_db, port, slow=True)
    processes.append(slow)
    slow.start()
    site = make_site(app, clock, slow.url, read_timeout=30)
    expected = queue_days(site, 5)
    results = []

    def send():
        with site.database.connection_context():
            results.append(run(site))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        slow.wait_for("STORED-FIRST-OF-BATCH")  # one report written, transaction still open
        slow.kill()
    finally:
        sender.join(40)
        slow.kill()
    assert results and results[0].status == "retry"
    with sqlite3.connect(vendor_db) as con:
        assert con.execute("SELECT COUNT(*) FROM report").fetchone()[0] == 0  # rolled back

    again = ReceiverProcess(vendor_db, port)
    processes.append(again)
    again.start()
    try:
        site.clock.advance(hours=1)
        assert run(site).status == "sent"
        assert run(site).status == "idle"
    finally:
        again.kill()
    with sqlite3.connect(vendor_db) as con:
        ids = [r[0] for r in con.execute("SELECT report_id FROM report")]
    assert sorted(ids) == sorted(expected)
    assert outbox_states() == {"sent": 5}


def test_a_day_is_queued_once(app, receiver, clock):
    from appliance.web.models.sync import SyncOutbox
    from appliance.web.sync import service

    site = make_site(app, clock, receiver.url)
    yesterday = site.clock().date() - dt.timedelta(days=1)
    assert service.enqueue_day(site.instance, yesterday, now=site.clock.naive()) is True
    assert service.enqueue_day(site.instance, yesterday, now=site.clock.naive()) is False
    run(site)
    run(site)
    site.clock.advance(hours=3)
    run(site)
    assert SyncOutbox.select().where(SyncOutbox.report_day == yesterday).count() == 1
    assert len(stored_ids(receiver)) == 1


def test_daily_request_cap_holds_under_a_vendor_outage(app, receiver, clock):
    """A day of worker rounds every 5 minutes (288) against a failing vendor: at most the cap."""
    site = make_site(app, clock, receiver.url, at=dt.time(0, 0), max_requests_per_day=24, backoff_base=1,
                     backoff_max=2)
    queue_days(site, 3)
    receiver.front.faults = ["500"] * 10_000
    for _ in range(24 * 12):
        run(site)
        site.clock.advance(minutes=5)
    assert len(receiver.front.posts()) == 24
    assert outbox_states() == {"pending": 3}  # kept, to be tried tomorrow
    # The next day has a fresh budget, and the reports still go out once.
    receiver.front.faults = []
    site.clock.advance(minutes=5)
    assert run(site).status == "sent"
    assert len(stored_ids(receiver)) == 4  # the three queued + the day enqueue_due added


def test_a_backlog_goes_out_in_a_few_batches(app, receiver, clock):
    site = make_site(app, clock, receiver.url)
    queue_days(site, 200)
    for _ in range(3):
        run(site)  # four batches per worker round
    assert outbox_states() == {"sent": 200}
    assert len(receiver.front.posts()) == 7  # ceil(200 / 31)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_hosts_send_a_batch_once(backend, tmp_path, receiver, request, clock):
    """Two workers (threads with their own connections) race for the same outbox."""
    from appliance.web import create_app
    from tests.helpers import make_instance

    url = "sqlite:///appliance.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    instance = make_instance(tmp_path / f"home-{backend}", url)
    app = create_app(instance=instance)
    database = app.extensions["database"]
    with database.connection_context():
        site = make_site(app, clock, receiver.url)
        receiver.register(site.identity)
        # A first, uncontended send: the day's counter row exists, as in steady state.
        expected = queue_days(site, 1)
        assert run(site).status == "sent"
        expected += queue_days_before(site, 10, before=1)
    receiver.front.faults = [("slow", 1.0)] * 4  # both hosts are in flight at the same time
    barrier = threading.Barrier(2)
    results = []

    def host():
        with database.connection_context():
            barrier.wait()
            results.append(run(site))

    threads = [threading.Thread(target=host) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(r.requests for r in results) == [0, 1]
    assert len(receiver.front.posts()) == 2  # the warm-up and one batch
    assert sorted(stored_ids(receiver)) == sorted(expected)
    with database.connection_context():
        assert outbox_states() == {"sent": 11}


@pytest.fixture(autouse=True)
def _register(request, receiver):
    """Most tests want the site registered at the receiver; do it once the app exists."""
    if "app" in request.fixturenames:
        app = request.getfixturevalue("app")
        receiver.register(load_identity(app.extensions["appliance_instance"]))


def test_a_remote_plain_http_url_is_refused_before_any_connection(app, clock):
    from appliance.web.sync import service

    site = make_site(app, clock, "http://sync.vendor.invalid")
    queue_days(site, 1)
    result = run(site)
    assert result.status == "error" and "use https" in result.messages[0]
    assert "use https" in service.status(site.instance)["config_problem"]
    assert outbox_states() == {"pending": 1}  # kept until the URL is fixed
