"""Background jobs run by ``appliance worker``: each is ``job(app)``, idempotent, and
safe to run on several hosts at once (they take database row locks where it matters)."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("appliance.web.jobs")

JOBS: list = []  # features append their job callables here


def run_round(app) -> list[tuple[str, str]]:
    """Run every job once; a failing job is reported and does not stop the others."""
    failures = []
    database = app.extensions["database"]
    for job in JOBS:
        with app.app_context():
            try:
                with database.connection_context():
                    job(app)
            except Exception as exc:  # keep the worker alive; the next round retries
                log.exception("job %s failed", job.__name__)
                failures.append((job.__name__, f"{type(exc).__name__}: {exc}"))
    _heartbeat(database, failures)
    return failures


def _heartbeat(database, failures) -> None:
    """Record that this host's worker is alive (the system page shows it)."""
    from appliance.web.models.base import utcnow
    from appliance.web.models.system import WorkerHeartbeat

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


# issue 6: daily usage reports to the vendor (does nothing while sync is off)
from appliance.web.sync.service import sync_job  # noqa: E402

JOBS.append(sync_job)

# issue 4: keep the licence clock high-water mark moving on idle appliances
from appliance.web.services.licence import licence_clock_job  # noqa: E402

JOBS.append(licence_clock_job)
