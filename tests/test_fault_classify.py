"""Which errors are faults (database down, busy, disk full, disk failing) and how they are named."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from peewee import IntegrityError, InterfaceError, OperationalError, PostgresqlDatabase, SqliteDatabase

from appliance.web.readiness import classify


class DriverError(Exception):
    """Stands in for psycopg2's errors: a message and a SQLSTATE."""

    def __init__(self, message, pgcode=None):
        super().__init__(message)
        self.pgcode = pgcode


def _rollback_after(first: Exception) -> OperationalError:
    """What peewee raises when SQLite already rolled back: a failed ROLLBACK with ``first`` as context."""
    try:
        try:
            raise first
        except Exception:
            raise OperationalError(sqlite3.OperationalError("cannot rollback - no transaction is active"))  # noqa: B904 (as peewee: implicit context)
    except OperationalError as exc:
        return exc


CASES = [
    (OperationalError(DriverError('connection to server at "db", port 5432 failed: Connection refused')),
     503, "database_down", "The database is not reachable (connection refused)"),
    (OperationalError(DriverError("connection to server failed: timeout expired")),
     503, "database_down", "The database is not reachable (connection timed out)"),
    (OperationalError(DriverError('FATAL: password authentication failed for user "app"')),
     503, "database_down", "The database is not reachable (authentication failed)"),
    (OperationalError(DriverError("FATAL: the database system is starting up")),
     503, "database_down", "The database is not reachable (the database server is starting up)"),
    (InterfaceError(DriverError("connection already closed")),
     503, "database_down", "The database is not reachable (the connection was lost)"),
    (OperationalError(sqlite3.OperationalError("database is locked")), 503, "database_busy", "The database is busy"),
    (OperationalError(DriverError('could not extend file "base/1/2": No space left on device', "53100")),
     507, "disk_full", "disk full on the database server"),
    (OperationalError(sqlite3.OperationalError("database or disk is full")),
     507, "disk_full", "disk full on /srv/inst"),
    (_rollback_after(OperationalError(sqlite3.OperationalError("database or disk is full"))),
     507, "disk_full", "disk full on /srv/inst"),
    (OperationalError(sqlite3.OperationalError("disk I/O error")),
     503, "disk_io", "disk I/O error on /srv/inst (a full or failing disk)"),
    (OSError(errno.ENOSPC, "No space left on device", "/srv/inst/keys/.session.key.tmp"),
     507, "disk_full", "disk full on /srv/inst/keys"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), 507, "disk_full", "disk full on /srv/inst"),
]


@pytest.mark.parametrize(("exc", "status", "kind", "reason"), CASES, ids=[c[3] for c in CASES])
def test_faults_are_named_without_hosts_or_passwords(exc, status, kind, reason):
    on_postgres = isinstance(getattr(exc, "orig", None), DriverError)
    database = PostgresqlDatabase("app") if on_postgres else SqliteDatabase("/srv/inst/appliance.db")
    fault = classify(exc, database, home=Path("/srv/inst"))
    assert (fault.status, fault.kind, fault.reason) == (status, kind, reason)
    assert '"db"' not in fault.message and "app" not in fault.reason


@pytest.mark.parametrize("exc", [
    OperationalError(sqlite3.OperationalError("no such table: contact")),  # a pending migration, not an outage
    OperationalError(sqlite3.OperationalError('near "SELEC": syntax error')),
    IntegrityError(sqlite3.IntegrityError("UNIQUE constraint failed: user.email_index")),
    OSError(errno.ENOENT, "No such file or directory"),
    ValueError("a bug"),
])
def test_bugs_and_bad_requests_are_not_faults(exc):
    assert classify(exc, SqliteDatabase("/srv/inst/appliance.db")) is None
