"""The installation's state at a glance: one list of checks for the system page and
``appliance status``. Each check is (name, level ok|warn|error, detail); none raises,
so the page still answers when a part is broken."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass

from peewee import PostgresqlDatabase

import appliance
from appliance.web.models.base import utcnow

WORKER_STALE = dt.timedelta(minutes=5)
DISK_WARN_FRACTION = 0.10
# A standby further behind than this is a warning: a failover would lose that much.
REPLICATION_LAG_WARN_SECONDS = 60


@dataclass
class Check:
    name: str
    level: str  # ok | warn | error
    detail: str
    link: str | None = None


def _safe(name, fn) -> Check:
    try:
        return fn()
    except Exception as exc:  # a broken part is a finding, not a crash
        return Check(name, "error", f"could not be checked: {type(exc).__name__}: {exc}")


def collect(instance, database) -> list[Check]:
    return [
        Check("Version", "ok", f"{appliance.__version__}, profile {instance['profile']}"),
        _safe("Database", lambda: _database(database)),
        *([_safe("Replication", lambda: _replication(instance, database))]
          if is_postgres_database(database) else []),
        _safe("Background worker", _worker),
        _safe("Licence", _licence),
        _safe("Encryption keys", _keys),
        _safe("Sync to vendor", lambda: _sync(instance)),
        _safe("Audit trail", _audit),
        _safe("Disk", lambda: _disk(instance)),
    ]


def worker_and_sync(instance) -> dict[str, Check]:
    """The two checks the provider's dashboard shows (the others read more than a glance needs)."""
    return {"worker": _safe("Background worker", _worker), "sync": _safe("Sync to vendor", lambda: _sync(instance))}


def offline(instance, fault) -> list[Check]:
    """The checks that need no database, and the database's fault with what to do."""
    todo = {
        "database_down": f"start the database service, or correct database_url in {instance.config_path}",
        "database_busy": "another process holds the database's write lock; try again",
        "database_error": "see the log; 'appliance migrate' if migrations are pending",
        "disk_full": "free space on that disk (see the Disk line)",
        "disk_io": "check that disk (dmesg, SMART) and free space on it",
    }[fault.kind]
    return [
        Check("Version", "ok", f"{appliance.__version__}, profile {instance['profile']}"),
        Check("Database", "error", f"{fault.reason}: {todo}"),
        _safe("Disk", lambda: _disk(instance)),
    ]


def _database(database) -> Check:
    from appliance.web.migrations import current_version, pending

    kind = "PostgreSQL" if is_postgres_database(database) else "SQLite"
    todo = pending(database)
    version = current_version(database)
    if todo:
        return Check("Database", "error", f"{kind}, schema {version}: {len(todo)} migration(s) pending; "
                     "run 'appliance migrate'")
    return Check("Database", "ok", f"{kind}, schema version {version}")


def is_postgres_database(database) -> bool:
    return isinstance(database, PostgresqlDatabase)


@dataclass
class Standby:
    name: str
    state: str | None  # None: this role may not see it (pg_read_all_stats)
    lag_seconds: float
    lag_bytes: int


@dataclass
class Replication:
    in_recovery: bool  # this database is itself a standby
    standbys: list[Standby]
    replay_delay_seconds: float | None = None  # on a standby: how old the last replayed change is


def replication_state(database) -> Replication:
    """Streaming replication as PostgreSQL reports it to this connection.

    On a primary, each standby from pg_stat_replication with its replay lag (PostgreSQL
    leaves the lag empty once an idle standby has caught up: 0 then); on a standby, the
    age of the last replayed transaction, 0 when everything received is replayed.
    """
    in_recovery = bool(database.execute_sql("SELECT pg_is_in_recovery()").fetchone()[0])
    if in_recovery:
        delay = database.execute_sql(
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
            "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END").fetchone()[0]
        return Replication(True, [], float(delay) if delay is not None else None)
    rows = database.execute_sql(
        "SELECT application_name, state, EXTRACT(EPOCH FROM replay_lag), "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication "
        "ORDER BY application_name").fetchall()
    return Replication(False, [Standby(name or "?", state, float(lag or 0), int(behind or 0))
                               for name, state, lag, behind in rows])


def _replication_expected(instance) -> bool:
    from appliance.core.sizing import SIZED_PROFILES, load_profile

    profile = instance["profile"]
    return profile in SIZED_PROFILES and bool(load_profile(profile)["postgresql"].get("replication"))


def _replication(instance, database) -> Check:
    state = replication_state(database)
    if state.in_recovery:
        delay = "unknown" if state.replay_delay_seconds is None else f"{state.replay_delay_seconds:.0f} s"
        return Check("Replication", "warn", f"this database is a read-only standby (replay delay {delay}): "
                     "writes fail until it is promoted (docs/OPERATIONS.md, Failover)")
    if not state.standbys:
        if _replication_expected(instance):
            return Check("Replication", "error", f"the {instance['profile']} profile has a standby, but none is "
                         "streaming from this database: check PostgreSQL on the standby host and its log")
        return Check("Replication", "ok", "no standby (none in this profile)")
    hidden = [s.name for s in state.standbys if s.state is None]
    if hidden:
        return Check("Replication", "warn", f"{len(state.standbys)} standby connection(s), state hidden from "
                     "the app's database role: grant it pg_read_all_stats (site.yml does)")
    detail = ", ".join(f"{s.name} {s.state}, {s.lag_seconds:.1f} s / {s.lag_bytes} bytes behind"
                       for s in state.standbys)
    behind = [s for s in state.standbys
              if s.state != "streaming" or s.lag_seconds > REPLICATION_LAG_WARN_SECONDS]
    return Check("Replication", "warn" if behind else "ok", detail)


def _worker() -> Check:
    from appliance.web.models.system import WorkerHeartbeat

    beats = list(WorkerHeartbeat.select().order_by(WorkerHeartbeat.last_round_at.desc()))
    if not beats:
        return Check("Background worker", "warn", "no worker has run yet: start 'appliance worker'")
    now = utcnow()
    fresh = [b for b in beats if now - b.last_round_at < WORKER_STALE]
    hosts = ", ".join(f"{b.host} ({int((now - b.last_round_at).total_seconds())} s ago)" for b in beats)
    if not fresh:
        return Check("Background worker", "error", f"no worker round for over 5 minutes: {hosts}")
    failing = [b for b in fresh if b.last_failures]
    if failing:
        return Check("Background worker", "warn", f"{hosts}; failing jobs: {failing[0].last_failures}")
    return Check("Background worker", "ok", hosts)


def _licence() -> Check:
    from appliance.web.services import licence

    state = licence.current_state()
    level = {"valid": "ok", "expiring_soon": "warn", "evaluation": "warn", "grace": "warn"}.get(state.status, "error")
    days = f", {state.days_left} day(s) left" if state.days_left is not None else ""
    return Check("Licence", level, f"{state.title} ({state.mode}){days}")


def _keys() -> Check:
    from appliance.web.crypto.admin import key_status

    status = key_status()
    rotations = status["running_rotations"]
    detail = f"master key {status['master_key_id']} ({status['master_key_source']}), " \
             f"{len(status['tenants'])} tenant(s) with data keys"
    if rotations:
        done = sum(j["rows_done"] for j in rotations)
        return Check("Encryption keys", "warn", f"{detail}; {len(rotations)} rotation(s) running, {done} rows done")
    return Check("Encryption keys", "ok", detail)


def _sync(instance) -> Check:
    from appliance.web.sync import service

    info = service.status(instance)
    if info["locked_off"]:
        return Check("Sync to vendor", "ok", "turned off by the installer")
    if not info["enabled"]:
        return Check("Sync to vendor", "ok", "off (nothing leaves the network)")
    if info["config_problem"] or info["outbox"].get("failed"):
        return Check("Sync to vendor", "warn", info["config_problem"] or f"last error: {info['last_error']}")
    return Check("Sync to vendor", "ok", f"on; last report sent {info['last_sent_at'] or 'not yet'}")


def _audit() -> Check:
    from appliance.web.models.audit import verify

    report = verify()
    if report.broken:
        return Check("Audit trail", "error",
                     f"{len(report.broken)} of {report.total} entries do not chain: first at id {report.broken[0]}")
    if report.problems:
        return Check("Audit trail", "error", " ".join(report.problems))
    return Check("Audit trail", "ok", f"{report.total} entries, chain intact and anchored")


def _disk(instance) -> Check:
    from flask import current_app, has_app_context

    usage = shutil.disk_usage(instance.home)
    free = usage.free / usage.total
    detail = f"{usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB ({free:.0%}) at {instance.home}"
    readiness = current_app.extensions.get("readiness") if has_app_context() else None
    problem = readiness.disk_problem() if readiness is not None else None
    if problem:  # writes fail (or are about to): not a warning any more
        return Check("Disk", "error", f"{problem}; free space there, the app recovers by itself")
    return Check("Disk", "warn" if free < DISK_WARN_FRACTION else "ok", detail)
