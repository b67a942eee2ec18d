"""What every entry point checks about the database before it runs on it.

Creating the database is ``init``'s job alone: opening a missing SQLite file would
silently make a new, empty one (and an instance that runs empty is worse than one
that does not start). A file that is not a database, or one cut short, is named
before SQLite fails somewhere deeper; a schema newer than this code (a downgrade, or
the wrong database) is refused by every command rather than half-understood.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from peewee import DatabaseError, InterfaceError, OperationalError, SqliteDatabase

from appliance.core.config import ConfigError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100


class DatabaseRefused(ConfigError):
    """The database is missing, unreadable or from newer code; the message says what to do."""


def check_database(instance, database, *, may_create: bool = False) -> None:
    """Refuse a database this code must not run on; connection failures are left to the caller.

    ``may_create`` is for ``init`` (and the tests' instance builder): only they may
    bring a new SQLite file into being.
    """
    if isinstance(database, SqliteDatabase):
        path = Path(database.database)
        # An empty file is what an init stopped before its first table leaves: init carries on.
        if may_create and (not path.exists() or (path.is_file() and path.stat().st_size == 0)):
            return
        check_sqlite_file(instance, path)
    check_schema_not_newer(instance, database)


def check_sqlite_file(instance, path: Path) -> None:
    """Refuse a missing, unreadable, foreign or truncated SQLite file, saying what to do.

    Reading the header opens and closes the file, and a close drops every POSIX lock the
    process holds on it, those of its open SQLite connections too (SQLite cannot know):
    another process's last connection would then remove the WAL they still use. So the
    header is not read while a pool of this process holds the file open (it was read
    when that pool's first connection was made, and the file is evidently a database).
    """
    from appliance.web.db import sqlite_file_held

    home = instance.home
    if not path.exists():
        raise DatabaseRefused(
            f"The database file {path} does not exist. Only 'appliance --home {home} init' creates one: "
            f"run it for a new instance; otherwise restore the file from a backup, or correct "
            f"database_url in {instance.config_path}."
        )
    if not path.is_file():
        raise DatabaseRefused(f"The database {path} is not a file: correct database_url in {instance.config_path}.")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise DatabaseRefused(
            f"Cannot open the database {path}: permission denied. Run as the service user, or give "
            f"that user the file and its directory ('chown -R SERVICE_USER {path.parent}')."
        )
    if sqlite_file_held(path):
        return
    try:
        with path.open("rb") as fh:
            header = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise DatabaseRefused(f"Cannot read the database {path}: {exc.strerror or exc}.") from None
    restore = (f"restore it from a backup ('appliance --home {home} backup restore ARCHIVE'), "
               "or move it away and run init")
    if not header:
        raise DatabaseRefused(f"The database file {path} is empty (0 bytes), so it holds no data: {restore}.")
    if not header.startswith(SQLITE_MAGIC):
        raise DatabaseRefused(f"{path} is not an SQLite database (its first bytes say otherwise): {restore}, "
                              f"or correct database_url in {instance.config_path}.")
    expected = _sqlite_size(header)
    actual = path.stat().st_size
    wal = path.with_name(path.name + "-wal")
    # With a write-ahead log the file may legitimately trail its header until the next checkpoint.
    if expected and actual < expected and not (wal.exists() and wal.stat().st_size):
        raise DatabaseRefused(
            f"The database file {path} is truncated ({actual} of {expected} bytes): {restore}."
        )


def _sqlite_size(header: bytes) -> int:
    """The database size its header states (page size x page count), or 0 when the header does not say."""
    if len(header) < HEADER_BYTES:
        return 0
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # the page count is only kept by SQLite 3.7.0 and later
    return page_size * pages if valid else 0


def check_schema_not_newer(instance, database) -> None:
    from appliance.web.migrations import available, current_version

    try:
        with database.connection_context():
            version = current_version(database)
    except (OperationalError, InterfaceError) as exc:
        if isinstance(database, SqliteDatabase) and "locked" not in str(exc):
            raise _unreadable(instance, database) from None
        return  # a server that is down, or a busy file, is reported where requests meet it
    except DatabaseError:  # "file is not a database", "database disk image is malformed"
        raise _unreadable(instance, database) from None
    latest = max(v for v, _ in available())
    if version > latest:
        raise DatabaseRefused(
            f"The database ({_where(instance, database)}) has schema version {version}, newer than this "
            f"code's {latest}: install the appliance release that wrote it (or a later one); this code "
            "must not run on it. A wrong database? Correct database_url in "
            f"{instance.config_path}."
        )


def _unreadable(instance, database) -> DatabaseRefused:
    error = sys.exc_info()[1]
    return DatabaseRefused(
        f"The database file {database.database} cannot be read ({error}): it is damaged or not a "
        f"database. Restore it from a backup ('appliance --home {instance.home} backup restore ARCHIVE')."
    )


def _where(instance, database) -> str:
    if isinstance(database, SqliteDatabase):
        return str(database.database)
    return f"{database.database} on {database.connect_params.get('host') or 'localhost'}"


def schema_problem(database) -> str | None:
    """Why the schema is not ready to serve (for /health), or None."""
    from appliance.web.migrations import available, current_version, pending

    version = current_version(database)
    if version == 0:
        return "the database holds no schema: run 'appliance init'"
    latest = max(v for v, _ in available())
    if version > latest:
        return f"schema version {version} is newer than this code's {latest}: upgrade the code"
    todo = pending(database)
    if todo:
        return f"{len(todo)} migration(s) pending: run 'appliance migrate'"
    return None


@contextmanager
def exit_on_config_error(status: int = 4):
    """For server factories: a configuration that cannot start ends the process with its message.

    gunicorn takes a worker's exit status 4 as "App failed to load" and stops, where
    an exception would be logged as a traceback by every worker it keeps booting.
    """
    try:
        yield
    except ConfigError as exc:
        print(f"appliance: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(status) from None
