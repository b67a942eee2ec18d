"""Whether this process can answer, and why not: the faults requests meet at the edges.

A process starts even when its database is down: start-up steps that need the
database (checking the master key against it) wait in ``Readiness`` and run on the
first request that connects. Database errors and full or failing disks become a
``Fault``: the status code and a reason the client may read (what, and where), and
one log line per kind and place per minute however many requests meet it.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peewee import InterfaceError, OperationalError, SqliteDatabase
from werkzeug.exceptions import ServiceUnavailable

log = logging.getLogger("appliance.web.readiness")

LOG_EVERY_SECONDS = 60.0
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
SQLITE_FULL, SQLITE_IOERR = 13, 10
PG_DISK_FULL, PG_IO_ERROR = "53100", "58030"
DATABASE_ERRORS = (OperationalError, InterfaceError)

# What the PostgreSQL driver says, and what we tell the client instead (no host names).
_PG_CAUSES = (
    ("connection refused", "connection refused"),
    ("timeout expired", "connection timed out"),
    ("could not translate host name", "host name not found"),
    ("password authentication failed", "authentication failed"),
    ("does not exist", "database or role does not exist"),
    ("starting up", "the database server is starting up"),
    ("shutting down", "the database server is shutting down"),
    ("terminating connection", "the database server ended the connection"),
    ("server closed the connection", "the connection was lost"),
    ("connection already closed", "the connection was lost"),
    ("too many clients", "the database server has no free connections"),
)
# SQLite reports these as OperationalError too, but they are a schema or code mismatch, not an outage.
_NOT_FAULTS = ("no such table", "no such column", "has no column named", "syntax error")


@dataclass(frozen=True)
class Fault:
    status: int  # 503, or 507 for a full disk
    kind: str  # database_down | database_busy | database_error | disk_full | disk_io
    reason: str  # for the client: what and where, no credentials or host names
    detail: str = ""  # for the log: the driver's own words
    path: Path | None = None  # the local directory a disk fault is on

    @property
    def title(self) -> str:
        return "Insufficient Storage" if self.status == 507 else "Service Unavailable"

    @property
    def message(self) -> str:
        if self.kind == "disk_full":
            return f"{self.reason}: nothing can be saved until space is freed; try again later."
        if self.kind == "disk_io":
            return f"{self.reason}: nothing can be saved; try again later. Admins: check the disk."
        return f"{self.reason}; try again shortly. Admins: check the database service."


class StartupIncomplete(ServiceUnavailable):
    description = ("The service could not finish starting; the error was logged. "
                   "Admins: see the server log.")


def _original(exc: BaseException) -> BaseException:
    return getattr(exc, "orig", None) or exc.__cause__ or exc.__context__ or exc


def _where(database) -> Path | None:
    name = getattr(database, "database", None)
    if isinstance(database, SqliteDatabase) and name and name != ":memory:":
        return Path(name).resolve().parent
    return None


def classify(exc: BaseException, database=None, home: Path | None = None) -> Fault | None:
    """The fault ``exc`` stands for, or None when it is not one (a bug, a bad request).

    ``home`` is where a failed write without a file name happened. The whole chain
    is searched for a disk fault: after SQLITE_FULL, SQLite has already rolled the
    transaction back, and the error that reaches us is peewee's failed ROLLBACK
    with the disk error as its context.
    """
    seen, todo = [], [exc]
    while todo and len(seen) < 12:  # the driver's error, and what each was raised from or during
        link = todo.pop(0)
        if link is None or any(link is known for known in seen):
            continue
        seen.append(link)
        todo += [getattr(link, "orig", None), link.__cause__, link.__context__]
    for link in seen:
        fault = _disk_fault(link, database, home)
        if fault is not None:
            return fault
    if not isinstance(exc, DATABASE_ERRORS):
        return None
    text = " ".join(str(_original(exc)).split())  # one log line: drivers' messages span several
    lowered = text.lower()
    place = _where(database)
    if "database is locked" in lowered or "database table is locked" in lowered:
        return Fault(503, "database_busy", "The database is busy", text)
    if any(words in lowered for words in _NOT_FAULTS):
        return None
    cause = next((said for words, said in _PG_CAUSES if words in lowered), None)
    if cause is None and "unable to open database file" in lowered:
        cause = f"cannot open the database file in {place or 'its directory'}"
    reason = f"The database is not reachable ({cause})" if cause else "The database is not reachable"
    return Fault(503, "database_down", reason, text or type(exc).__name__, place)


def _disk_fault(exc: BaseException, database, home: Path | None) -> Fault | None:
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS | {errno.EIO}:
        place = Path(exc.filename).parent if exc.filename else home
        where = str(place) if place else "the appliance's disk"
        if exc.errno == errno.EIO:
            return Fault(503, "disk_io", f"disk I/O error on {where}", str(exc), place)
        return Fault(507, "disk_full", f"disk full on {where}", str(exc), place)
    if not isinstance(exc, (*DATABASE_ERRORS, sqlite3.Error)) and not hasattr(exc, "pgcode"):
        return None
    orig = _original(exc)
    text = " ".join(str(orig).split())
    lowered = text.lower()
    code = getattr(orig, "sqlite_errorcode", None)
    pgcode = getattr(orig, "pgcode", None)
    place = _where(database)
    where = str(place) if place else "the database server"
    if (code is not None and code & 0xFF == SQLITE_FULL) or pgcode == PG_DISK_FULL or \
            "database or disk is full" in lowered or "no space left on device" in lowered:
        return Fault(507, "disk_full", f"disk full on {where}", text, place)
    if (code is not None and code & 0xFF == SQLITE_IOERR) or pgcode == PG_IO_ERROR or "disk i/o error" in lowered:
        return Fault(503, "disk_io", f"disk I/O error on {where} (a full or failing disk)", text, place)
    return None


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Readiness:
    """One per app: deferred start-up steps, fault logging, and the disk watch."""

    def __init__(self, database, paths: list[Path], min_free_bytes: int,
                 clock: Callable[[], float] = time.monotonic):
        self.database = database
        self.paths = paths  # local directories whose disk the app writes to
        self.min_free_bytes = min_free_bytes
        self.clock = clock
        self._pending: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()  # one thread runs the waiting steps
        self._log_lock = threading.Lock()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}
        self._last_disk_fault: tuple[float, Fault, int | None] | None = None

    @classmethod
    def for_app(cls, app, database, instance) -> Readiness:
        paths = [instance.home]
        place = _where(database)
        if place and place != instance.home:
            paths.append(place)
        readiness = cls(database, paths, int(instance["disk_min_free_bytes"]))
        app.extensions["readiness"] = readiness
        return readiness

    # -- start-up steps that need the database ------------------------------------------

    def start(self, name: str, step: Callable[[], object]) -> None:
        """Run ``step`` now, or later (on the first request that connects) if the database is down."""
        try:
            step()
        except DATABASE_ERRORS as exc:
            fault = self.fault(exc) or Fault(503, "database_error", "The database could not answer", str(exc))
            log.warning("%s: starting anyway; %s waits until the database answers [%s]",
                        fault.reason, name, fault.detail)
            self._pending.append((name, step))

    def ensure(self) -> None:
        """Finish waiting start-up steps; the database must be connected. Database errors propagate."""
        if not self._pending:
            return
        with self._lock:
            while self._pending:
                name, step = self._pending[0]
                try:
                    step()
                except DATABASE_ERRORS:
                    raise
                except Exception as exc:
                    self._log_throttled(("startup", name), "start-up step %s failed: %s: %s",
                                        name, type(exc).__name__, exc)
                    raise StartupIncomplete() from exc
                self._pending.pop(0)
                log.warning("the database answers: %s done", name)

    def probe(self) -> Fault | None:
        """Connect, finish start-up and run a trivial query; the fault when that fails (commands, worker)."""
        try:
            opened = self.database.is_closed()
            self.database.connect(reuse_if_open=True)
            try:
                self.ensure()
                self.database.execute_sql("SELECT 1")
            finally:
                if opened and not self.database.is_closed():
                    self.database.close()
        except DATABASE_ERRORS as exc:
            return self.report(exc)
        return None

    # -- faults -----------------------------------------------------------------------------

    def fault(self, exc: BaseException) -> Fault | None:
        fault = classify(exc, self.database, self.paths[0] if self.paths else None)
        if fault is not None and fault.kind == "disk_io" and fault.path is not None:
            # SQLite says "disk I/O error" when it cannot grow its shared-memory file on a full disk.
            free = self._free(fault.path)
            if free is not None and free < self.min_free_bytes:
                return Fault(507, "disk_full", f"disk full on {fault.path}", fault.detail, fault.path)
        return fault

    def report(self, exc: BaseException) -> Fault:
        """Classify a database or disk error, remember a disk fault, log it (once a minute)."""
        fault = self.fault(exc) or Fault(503, "database_error", "The database could not answer this request",
                                         f"{type(exc).__name__}: {exc}")
        if fault.kind in ("disk_full", "disk_io"):
            free = self._free(fault.path)
            self._last_disk_fault = (self.clock(), fault, free)
        self._log_throttled((fault.kind, fault.reason), "%s [%s]", fault.reason, fault.detail)
        return fault

    def _log_throttled(self, key, message, *args) -> None:
        now = self.clock()
        with self._log_lock:
            last, suppressed = self._logged.get(key, (None, 0))
            if last is not None and now - last < LOG_EVERY_SECONDS:
                self._logged[key] = (last, suppressed + 1)
                return
            self._logged[key] = (now, 0)
        more = f" [{suppressed} more in the last minute]" if suppressed else ""
        log.error(message + "%s", *args, more)

    # -- the disk watch (/health, status) ------------------------------------------------------

    def _free(self, path: Path | None) -> int | None:
        try:
            return free_bytes(path) if path else None
        except OSError:
            return None

    def disk_problem(self) -> str | None:
        """Why writes fail or are about to: a disk below the reserve, or a recent disk fault not yet healed.

        A fault on a local disk heals as soon as that disk has more space than when
        the fault was seen; any fault (PostgreSQL's disk, an I/O error with space
        left) is forgotten a minute after the last request that met it.
        """
        for path in self.paths:
            free = self._free(path)
            if free is not None and free < self.min_free_bytes:
                return (f"disk full on {path}: {free} bytes free, below disk_min_free_bytes "
                        f"({self.min_free_bytes})")
        if self._last_disk_fault is None:
            return None
        seen, fault, free_then = self._last_disk_fault
        free_now = self._free(fault.path)
        healed = free_then is not None and free_now is not None and free_now > free_then
        if not healed and self.clock() - seen < LOG_EVERY_SECONDS:
            return fault.reason
        self._last_disk_fault = None
        return None
