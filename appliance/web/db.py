"""The database proxy every model binds to, and how a URL becomes a database."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from peewee import DatabaseProxy, PostgresqlDatabase, SqliteDatabase

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


def open_database(url: str):
    """Build (not connect) a peewee database for ``sqlite:///path`` or ``postgresql://...``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise DatabaseURLError(f"SQLite URL needs a path: sqlite:///PATH (got {url!r})")
        return SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    if parsed.scheme in {"postgres", "postgresql"}:
        return PostgresqlDatabase(
            unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username or "") or None,
            password=unquote(parsed.password or "") or None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            connect_timeout=5,
        )
    raise DatabaseURLError(
        f"Unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"
    )


def bind(url: str):
    db = open_database(url)
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
    return database_proxy.atomic("IMMEDIATE")


def serialized(lock_key: int):
    """A transaction in which writers holding the same ``lock_key`` take turns.

    For check-then-insert rules (licence limits, the audit chain): PostgreSQL takes a
    transaction-scoped advisory lock; SQLite starts the transaction IMMEDIATE, which
    already serialises every writer. Nested inside another transaction it becomes a
    savepoint, and on SQLite the outer transaction's lock applies.
    """
    from contextlib import contextmanager

    @contextmanager
    def _block():
        postgres = is_postgres()
        outer = database_proxy.in_transaction()
        with database_proxy.atomic(*([] if postgres or outer else ["IMMEDIATE"])) as txn:
            if postgres:
                database_proxy.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            yield txn

    return _block()


LOCK_AUDIT = 0x61756474  # "audt"
LOCK_LICENCE_GROWTH = 0x6C696367  # "licg": tenant and seat creation against licence limits
