"""Background jobs run by ``appliance worker``: each is ``job(app)``, idempotent, and
safe to run on several hosts at once (they take database row locks where it matters).

A feature with periodic work adds its job to :func:`all_jobs`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

from appliance.web.business.reminders import renewal_reminders_job
from appliance.web.business.schedule import scheduled_changes_job
from appliance.web.channels.email.service import email_job
from appliance.web.models.base import utcnow
from appliance.web.models.system import WorkerHeartbeat
from appliance.web.services.contacts import name_index_job
from appliance.web.services.conversations import snooze_job
from appliance.web.services.licence import licence_clock_job
from appliance.web.services.live import prune_job as live_prune_job
from appliance.web.services.metering import metering_job
from appliance.web.services.outbox import outbox_job
from appliance.web.services.pollers import poll_job
from appliance.web.services.reports import reports_job
from appliance.web.services.routing import queue_job as routing_queue_job
from appliance.web.services.throttle import security_cleanup_job
from appliance.web.sync.service import sync_job

log = logging.getLogger("appliance.web.jobs")


def all_jobs() -> list[Callable]:
    """Every job, in the order a round runs them."""
    return [
        sync_job,  # daily usage reports to the vendor (does nothing while sync is off)
        licence_clock_job,  # keeps the licence clock high-water mark moving on idle appliances
        poll_job,  # messenger channels that receive by polling (Telegram getUpdates, VK long poll)
        email_job,  # e-mail channels: new mail from IMAP into conversations, replies out by SMTP
        outbox_job,  # replies to messenger and webhook channels
        routing_queue_job,  # conversations nobody could take yet, to the members who can take them now
        scheduled_changes_job,  # future-dated contract changes whose day has come, each once
        metering_job,  # usage per tenant per local day, for billing and the customers' usage pages
        reports_job,  # report figures per tenant per local day (channel, team, agent), for the reports pages
        renewal_reminders_job,  # notices before contracts end
        security_cleanup_job,  # old throttle counters and dead sessions
        live_prune_job,  # forgets live-update events no reconnecting page can still ask for
        snooze_job,  # snoozed conversations whose time has come back to open, each once
        name_index_job,  # blind-indexes the names of contacts stored before names had one
    ]


def run_round(app, jobs: Sequence[Callable] | None = None) -> list[tuple[str, str]]:
    """Run every job once (or only ``jobs``); a failing job is reported and does not stop the others."""
    failures = []
    database = app.extensions["database"]
    for job in all_jobs() if jobs is None else jobs:
        with app.app_context():
            try:
                with database.connection_context():
                    job(app)
            except Exception as exc:  # keep the worker alive; the next round retries
                readiness = app.extensions.get("readiness")
                if readiness is not None and readiness.fault(exc) is not None:
                    readiness.report(exc)  # a full disk or a lost database: one line a minute, not a traceback a job
                else:
                    log.exception("job %s failed", job.__name__)
                failures.append((job.__name__, f"{type(exc).__name__}: {exc}"))
    _heartbeat(database, failures)
    return failures


def _heartbeat(database, failures) -> None:
    """Record that this host's worker is alive (the system page shows it)."""
    summary = ", ".join(f"{name}: {error.split(':', 1)[0]}" for name, error in failures)[:1000]
    try:
        with database.connection_context():
            (WorkerHeartbeat.insert(host=socket.gethostname(), pid=os.getpid(), last_round_at=utcnow(),
                                    last_failures=summary)
             .on_conflict(conflict_target=[WorkerHeartbeat.host],
                          update={WorkerHeartbeat.pid: os.getpid(), WorkerHeartbeat.last_round_at: utcnow(),
                                  WorkerHeartbeat.last_failures: summary})
             .execute())
    except Exception:  # the database being down is what the next round will report
        log.warning("could not record the worker heartbeat")
