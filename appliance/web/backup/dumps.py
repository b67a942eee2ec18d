"""Getting a consistent copy of the database out, and putting one back, per engine.

SQLite: the online backup API copies a snapshot while the app keeps writing (WAL).
PostgreSQL: ``pg_dump -Fc`` (one snapshot, the custom format pg_restore reads),
restored by piping ``pg_restore``'s SQL into ``psql --single-transaction``, after
dropping the old schema in the same transaction: a failed restore changes nothing.
Passwords go to the tools through PGPASSWORD, never on their command line.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

from appliance.web.backup.errors import BackupError


def kind_of(url: str) -> str:
    return "postgresql" if urlparse(url).scheme in {"postgres", "postgresql"} else "sqlite"


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite:///"):])


# -- SQLite -----------------------------------------------------------------------------

def sqlite_snapshot(url: str, dest: Path) -> None:
    """Copy the live database into ``dest`` in one backup step: one consistent snapshot.

    A stepped backup restarts whenever another connection writes, so under a steady
    write load it may never finish; one step holds a read snapshot, which in WAL mode
    does not block the app's writers.
    """
    path = sqlite_path(url)
    if not path.exists():  # sqlite3 would quietly create an empty database and back that up
        raise BackupError(f"the database {path} does not exist: nothing to back up "
                          "(check database_url in config.yml).")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst, pages=-1)
    finally:
        dst.close()
        src.close()
    os.chmod(dest, 0o600)


def sqlite_schema_version(path: Path) -> int:
    con = sqlite3.connect(str(path))
    try:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.DatabaseError:
        return 0
    finally:
        con.close()
    return int(row[0] or 0)


def sqlite_check(path: Path) -> None:
    con = sqlite3.connect(str(path))
    try:
        result = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the archived database is not a usable SQLite file: {exc}") from None
    finally:
        con.close()
    if result != "ok":
        raise BackupError(f"the archived SQLite database fails its integrity check: {result}")


def sqlite_install(staged: Path, url: str) -> None:
    """Put ``staged`` in place of the live database file (same directory, atomic rename)."""
    live = sqlite_path(url)
    live.parent.mkdir(parents=True, exist_ok=True)
    # A leftover WAL of the old database would be replayed into the restored one.
    for suffix in ("-wal", "-shm"):
        Path(str(live) + suffix).unlink(missing_ok=True)
    os.replace(staged, live)


# -- PostgreSQL ---------------------------------------------------------------------------

def pg_bindir(configured: str = "") -> Path:
    if configured:
        return Path(configured)
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True,
                            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0):
        if os.path.exists(os.path.join(candidate, "pg_dump")):
            return Path(candidate)
    found = shutil.which("pg_dump")
    if not found:
        raise BackupError("pg_dump not found: apt-get install postgresql-client, "
                          "or set backup.pg_bindir in config.yml.")
    return Path(found).parent


def pg_env(url: str, database: str | None = None) -> dict:
    parsed = urlparse(url)
    env = dict(os.environ)
    env.update({
        "PGHOST": parsed.hostname or "localhost",
        "PGPORT": str(parsed.port or 5432),
        "PGUSER": unquote(parsed.username or ""),
        "PGPASSWORD": unquote(parsed.password or ""),
        "PGDATABASE": database or unquote(parsed.path.lstrip("/")),
        "PGCONNECT_TIMEOUT": "10",
    })
    return env


def pg_dump_process(url: str, bindir: Path, stderr) -> subprocess.Popen:
    """``pg_dump -Fc`` writing to its stdout (the caller encrypts it as it comes).

    Its messages go to the file ``stderr``: a pipe nobody reads while the dump streams
    could fill up and stall pg_dump.
    """
    return subprocess.Popen([str(bindir / "pg_dump"), "-Fc", "--no-owner", "--no-privileges"],
                            stdout=subprocess.PIPE, stderr=stderr, env=pg_env(url))


def pg_check_dump(path: Path, bindir: Path) -> None:
    done = subprocess.run([str(bindir / "pg_restore"), "--list", str(path)],
                          capture_output=True, timeout=600)
    if done.returncode != 0:
        raise BackupError("the archived PostgreSQL dump is not readable by pg_restore: "
                          + done.stderr.decode(errors="replace").strip()[:500])


def pg_restore_into(path: Path, url: str, bindir: Path, database: str | None = None) -> None:
    """Replace every table of the database with the dump's, in one transaction."""
    env = pg_env(url, database)
    restore = subprocess.Popen(
        [str(bindir / "pg_restore"), "--no-owner", "--no-privileges", "-f", "-", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    psql = subprocess.Popen(
        # lock_timeout: a web or worker process still connected makes the restore fail
        # clearly instead of waiting forever for its locks.
        [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
         "-c", "SET lock_timeout = '30s'", "-c", "DROP SCHEMA IF EXISTS public CASCADE",
         "-c", "CREATE SCHEMA public", "-f", "-"],
        stdin=restore.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    restore.stdout.close()
    _, psql_err = psql.communicate(timeout=24 * 3600)
    restore_err = restore.stderr.read()
    restore.wait()
    if restore.returncode != 0 or psql.returncode != 0:
        detail = (psql_err or restore_err).decode(errors="replace").strip()[:800]
        hint = " Stop appliance-web and appliance-worker first." if "lock timeout" in detail else ""
        raise BackupError("PostgreSQL restore failed and was rolled back (the database is unchanged): "
                          + detail + hint)


def pg_admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    import psycopg2

    parsed = urlparse(url)
    con = psycopg2.connect(host=parsed.hostname, port=parsed.port or 5432,
                           user=unquote(parsed.username or ""), password=unquote(parsed.password or ""),
                           dbname=unquote(parsed.path.lstrip("/")), connect_timeout=10)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql)
    finally:
        con.close()


def with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return parsed._replace(path="/" + database).geturl()
