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
