"""The database proxy every model binds to, and how a URL becomes a database."""

from __future__ import annotations

import os
import select
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlparse

from peewee import DatabaseProxy, PostgresqlDatabase, SqliteDatabase
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

database_proxy = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "synchronous": "normal",
    "busy_timeout": 10000,
    "cache_size": -32 * 1024,
}


class DatabaseURLError(ValueError):
    pass


# libpq parameters a PostgreSQL URL may carry in its query string, e.g.
# ``?sslmode=verify-full&sslrootcert=/var/lib/appliance/tls/db-ca.crt`` (the
# installer's TLS to a database on another host). Anything else is refused, so a
# misspelt ``sslmode`` cannot silently fall back to libpq's "prefer".
LIBPQ_URL_PARAMETERS = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "target_session_attrs", "application_name",
})


def libpq_parameters(url: str) -> dict[str, str]:
    """The libpq parameters in a PostgreSQL URL's query string (refusing unknown ones)."""
    params = dict(parse_qsl(urlparse(url).query, keep_blank_values=True))
    unknown = sorted(set(params) - LIBPQ_URL_PARAMETERS)
    if unknown:
        raise DatabaseURLError(
            f"Unknown parameter(s) {', '.join(unknown)} in the database URL: use only "
            f"{', '.join(sorted(LIBPQ_URL_PARAMETERS))}")
    return params


@dataclass(frozen=True)
class Pool:
    """PostgreSQL connections kept open between requests, per process.

    ``size``: the most a process holds (one per serving thread is enough: a thread holds
    one connection at a time); ``stale_seconds``: a connection older than this is closed
    when it comes back, so server-side memory and a moved database are picked up;
    ``wait_seconds``: how long a request waits for a free connection before it fails.
    """

    size: int = 4
    stale_seconds: int = 300
    wait_seconds: int = 10

    @classmethod
    def from_settings(cls, settings) -> Pool:
        return cls(size=int(settings["database_pool_size"]), stale_seconds=int(settings["database_pool_stale_seconds"]),
                   wait_seconds=int(settings["database_pool_wait_seconds"]))


class PooledPostgres(PooledPostgresqlDatabase):
    """The pool, checking a connection at check-out without a round trip.

    peewee's pool sends ``SELECT 1`` on every check-out, one round trip per request.
    An idle connection gets nothing from the server unless it is going away (a restart,
    an administrator's terminate): then its socket turns readable. So one ``poll``
    tells a dead pooled connection from a live one, and after a PostgreSQL restart
    every dead connection is dropped at check-out instead of failing a request.
    """

    def _is_closed(self, conn):
        if conn.closed:
            return True
        status = self._adapter.txn_status(conn)
        if status == self._adapter.txn_unknown:
            return True
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
            if readable:
                return True
            if status != self._adapter.txn_idle:
                self._adapter.rollback(conn)
        except Exception:  # any failure here means the connection is not worth keeping
            return True
        return False


class PooledSqlite(PooledSqliteDatabase):
    """The pool, but a connection whose file is no longer the database's path is dropped.

    An open SQLite connection keeps reading the file it opened even after that file was
    moved away or replaced (a restore): one ``stat`` at check-out notices, so the next
    request opens the path anew (or fails as the database being unavailable).

    Kept connections hold SQLite's locks on the file for the life of the process, so
    nothing else in the process may open and close the database file itself (a close
    drops every POSIX lock the process holds on it): see startup.check_sqlite_file.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _SQLITE_POOLS.add(self)

    def _add_conn_hooks(self, conn):
        super()._add_conn_hooks(conn)
        self._files = getattr(self, "_files", {})
        self._files[id(conn)] = _file_id(self.database)

    def _is_closed(self, conn):
        if super()._is_closed(conn):
            return True
        return _file_id(self.database) != getattr(self, "_files", {}).get(id(conn))

    def _close_raw(self, conn):
        getattr(self, "_files", {}).pop(id(conn), None)
        super()._close_raw(conn)


# The process's SQLite pools, so that a check of the file can tell it is held open.
_SQLITE_POOLS: weakref.WeakSet = weakref.WeakSet()


def sqlite_file_held(path) -> bool:
    """Does a pool of this process keep connections to the file at ``path`` open?"""
    wanted = _file_id(str(path))
    return wanted is not None and any(
        (pool._connections or pool._in_use) and _file_id(pool.database) == wanted for pool in list(_SQLITE_POOLS))


def _file_id(path: str):
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def open_database(url: str, pool: Pool | None = None):
    """Build (not connect) a peewee database for ``sqlite:///path`` or ``postgresql://...``.

    With ``pool``, connections are kept between requests (``close`` hands them back). On
    SQLite too: opening one runs five pragmas, and closing the last one checkpoints the
    WAL and removes it, so the next write creates it again (together about 40% of a
    webhook post's time when posts come one at a time, by py-spy); there the pool has no
    upper bound, since an SQLite connection holds no server resources.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise DatabaseURLError(f"SQLite URL needs a path: sqlite:///PATH (got {url!r})")
        if pool is not None and pool.size > 0:
            database = PooledSqlite(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False,
                                    max_connections=None, stale_timeout=pool.stale_seconds,
                                    timeout=pool.wait_seconds)
        else:
            database = SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
        database.writer_lock = threading.Lock()  # see _immediate
        return database
    if parsed.scheme in {"postgres", "postgresql"}:
        pooled = {} if pool is None or pool.size <= 0 else {
            "max_connections": pool.size, "stale_timeout": pool.stale_seconds, "timeout": pool.wait_seconds}
        return (PooledPostgres if pooled else PostgresqlDatabase)(
            unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username or "") or None,
            password=unquote(parsed.password or "") or None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            connect_timeout=5,
            **libpq_parameters(url),
            **pooled,
        )
    raise DatabaseURLError(
        f"Unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"
    )


def bind(url: str, pool: Pool | None = None):
    db = open_database(url, pool)
    database_proxy.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database_proxy.obj, PostgresqlDatabase)


def write_transaction():
    """A transaction that will write: on SQLite it takes the write lock up front.

    A deferred SQLite transaction that reads, then writes, fails at once with
    "database is locked" when another connection committed in between (a stale
    snapshot cannot wait); BEGIN IMMEDIATE waits its turn instead. Nested, it is
    a savepoint under the outer transaction's lock.
    """
    if is_postgres() or database_proxy.in_transaction():
        return database_proxy.atomic()
    return _immediate()


@contextmanager
def _immediate():
    """BEGIN IMMEDIATE, with this process's writers queued on a lock first.

    SQLite's busy handler lets a waiting writer sleep in growing steps (up to 100 ms)
    and try again; under a burst, threads sleep while the lock is free and a writer's
    wait grows long (a p99 of seconds at 16 concurrent webhook posts). Queued on a
    lock, the next writer of this process starts as soon as the last one committed;
    other processes (the worker) still meet at SQLite's own lock.
    """
    lock = getattr(database_proxy.obj, "writer_lock", None)
    # Bounded like SQLite's own wait: past it, SQLite's busy handler decides as before.
    queued = lock is not None and lock.acquire(timeout=SQLITE_PRAGMAS["busy_timeout"] / 1000)
    try:
        with database_proxy.atomic("IMMEDIATE") as txn:
            yield txn
    finally:
        if queued:
            lock.release()


def serialized(lock_key: int):
    """A transaction in which writers holding the same ``lock_key`` take turns.

    For check-then-insert rules (licence limits, the audit chain): PostgreSQL takes a
    transaction-scoped advisory lock; SQLite starts the transaction IMMEDIATE, which
    already serialises every writer. Nested inside another transaction it becomes a
    savepoint, and on SQLite the outer transaction's lock applies.
    """
    @contextmanager
    def _block():
        postgres = is_postgres()
        outer = database_proxy.in_transaction()
        with database_proxy.atomic() if postgres or outer else _immediate() as txn:
            if postgres:
                database_proxy.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            yield txn

    return _block()


LOCK_AUDIT = 0x61756474  # "audt"
LOCK_LICENCE_GROWTH = 0x6C696367  # "licg": tenant and seat creation against licence limits
# A day's pre-computed rows, replaced by whichever app host's worker gets there: without it two
# workers deleting and inserting the same day at once collide on the day's unique key.
LOCK_METERING_DAY = 0x6D746472  # "mtdr"
LOCK_REPORT_DAY = 0x72707464  # "rptd"


# A cursor wrapper's own state for one run; the rest of it is the same for every run of a query.
_PER_RUN = frozenset({"cursor", "count", "index", "initialized", "populated", "row_cache"})


class Prepared:
    """A SELECT whose SQL is composed once per kind of database; each run only binds values.

    Composing SQL in peewee costs more than running a small query on SQLite. ``build``
    makes the query from its parameters; it is called once, with stand-ins that are
    then found among the composed query's parameters, and every later call sends the
    same SQL with the real values. Rows come back as the query would give them (models,
    joined models attached). Only for queries whose shape never depends on the values.
    """

    def __init__(self, build):
        self.build = build
        self._compiled: dict = {}
        # What peewee's row reader works out from the query before its first row (which
        # column goes to which joined model, converters): the same for every run, and on
        # a joined SELECT it costs more than reading the row.
        self._reader: dict = {}

    def __call__(self, *values):
        database = database_proxy.obj
        kind = type(database)
        compiled = self._compiled.get(kind)
        if compiled is None:
            compiled = self._compiled[kind] = self._compile(database, len(values))
        query, sql, params, slots = compiled
        bound = list(params)
        for position, index in slots:
            bound[position] = values[index]
        cursor = database.execute_sql(sql, bound)
        wrapper = query._get_cursor_wrapper(cursor)
        if cursor.description is None:
            return wrapper
        reader = self._reader.get(kind)
        if reader is None:
            wrapper.initialize()
            reader = self._reader[kind] = {k: v for k, v in vars(wrapper).items() if k not in _PER_RUN}
        else:
            vars(wrapper).update(reader)
        wrapper.initialized = True
        return wrapper

    def _compile(self, database, count: int):
        stand_ins = [f"\x00prepared-{i}\x00" for i in range(count)]
        query = self.build(*stand_ins)
        sql, params = database.get_sql_context().sql(query).query()
        slots = [(position, stand_ins.index(value)) for position, value in enumerate(params) if value in stand_ins]
        if sorted({index for _, index in slots}) != list(range(count)):  # a value may be used twice
            raise ValueError("Prepared: each value must appear, unchanged, among the query's parameters")
        return query, sql, params, slots
