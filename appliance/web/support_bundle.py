"""The support bundle: what a vendor engineer needs to diagnose an installation, and no more.

Versions, the configuration with secrets removed, the System page checks, schema
version and table sizes, key ids (never keys), the backups present, and recent log
lines passed through the redaction rules (appliance.core.redact). No row of
customer data is ever read into it. ``preview`` lists the entries without building them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from peewee import PostgresqlDatabase

import appliance
from appliance.core import clock
from appliance.core.redact import redact_settings, scrub_text

ENTRIES = [
    ("versions.json", "versions of the appliance, Python, libraries, database engine, OS"),
    ("config.json", "settings (config.yml merged with defaults), secrets replaced by <redacted>"),
    ("status.json", "the System page checks (redacted)"),
    ("schema.json", "schema version, pending migrations, row count per table"),
    ("keys.json", "key ids and file modes (never key material)"),
    ("backups.json", "backup archives present (names, sizes)"),
    ("logs/", "recent log lines (log files and journal), scrubbed of personal data and credentials"),
]


def preview(instance) -> list[tuple[str, str]]:
    rows = list(ENTRIES)
    for path in _log_files(instance):
        rows.append((f"logs/{path.name}", f"last {instance['support']['log_lines']} lines of {path}"))
    return rows


def build(instance, database, out: Path) -> list[str]:
    """Write the bundle (a .tar.gz, 0600) to ``out``; return the entry names."""
    entries: dict[str, bytes] = {}

    def put(name, obj):
        entries[name] = (json.dumps(obj, indent=2, default=str) + "\n").encode()

    put("versions.json", _versions(database))
    put("config.json", redact_settings(instance.settings))
    put("status.json", _status(instance, database))
    put("schema.json", _schema(database))
    put("keys.json", _keys(instance, database))
    put("backups.json", _backups(instance))
    for name, text in _logs(instance):
        entries[f"logs/{name}"] = scrub_text(text).encode()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        mtime = clock.now().timestamp()
        for name, data in entries.items():
            info = tarfile.TarInfo(f"support-bundle/{name}")
            info.size, info.mtime, info.mode = len(data), mtime, 0o600
            tar.addfile(info, io.BytesIO(data))
    return list(entries)


def _safe(fn):
    try:
        return fn()
    except Exception as exc:  # a broken part is a finding in the bundle, not a failed bundle
        return {"error": scrub_text(f"{type(exc).__name__}: {exc}")}


def _versions(database):
    libs = {}
    for dist in ("Flask", "peewee", "cryptography", "click", "psycopg2-binary", "gunicorn", "PyYAML"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            libs[dist] = metadata.version(dist)
    import sqlite3

    engine = _safe(lambda: database.execute_sql("SELECT version()").fetchone()[0]) \
        if isinstance(database, PostgresqlDatabase) else f"SQLite {sqlite3.sqlite_version}"
    return {"appliance": appliance.__version__, "python": sys.version.split()[0], "libraries": libs,
            "database": engine, "os": platform.platform(), "generated_at": clock.now().isoformat()}


def _status(instance, database):
    from appliance.web.system_status import collect

    def run():
        return [{"name": c.name, "level": c.level, "detail": scrub_text(c.detail)}
                for c in collect(instance, database)]

    return _safe(run)


def _schema(database):
    from appliance.web.migrations import current_version, pending

    def run():
        tables = {t: database.execute_sql(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in database.get_tables()}
        return {"version": current_version(database), "pending": [n for _, n in pending(database)],
                "row_counts": tables}

    return _safe(run)


def _keys(instance, database):
    def run():
        from appliance.web.crypto.tables import CryptoMaster, TenantKey

        row = CryptoMaster.select().first() if database.table_exists("crypto_master") else None
        modes = {}
        keys_dir = instance.home / "keys"
        for path in sorted(keys_dir.glob("*")) if keys_dir.exists() else []:
            if path.is_file():
                modes[path.name] = oct(path.stat().st_mode & 0o777)
        return {"database_master_key_id": row.master_key_id if row else None,
                "tenant_keys": TenantKey.select().count() if database.table_exists("crypto_tenant_key") else 0,
                "key_file_modes": modes}

    return _safe(run)


def _backups(instance):
    def run():
        directory = instance.path(instance["backup"]["directory"])
        return [{"name": p.name, "bytes": p.stat().st_size} for p in sorted(directory.glob("*.apbk"))] \
            if directory.exists() else []

    return _safe(run)


def _log_files(instance) -> list[Path]:
    found = []
    for pattern in instance["support"]["log_globs"]:
        found.extend(sorted(instance.home.glob(pattern)) if not Path(pattern).is_absolute()
                     else sorted(Path("/").glob(pattern.lstrip("/"))))
    return [p for p in found if p.is_file()]


def _tail(path: Path, lines: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - lines * 400))
        data = fh.read().decode("utf-8", "replace")
    return "\n".join(data.splitlines()[-lines:]) + "\n"


def _logs(instance):
    lines = int(instance["support"]["log_lines"])
    for path in _log_files(instance):
        yield path.name, _tail(path, lines)
    journalctl = shutil.which("journalctl")
    for unit in instance["support"]["journal_units"] if journalctl else []:
        try:
            done = subprocess.run([journalctl, "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-iso"],
                                  capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() and b"-- No entries --" not in done.stdout:
            yield f"journal-{unit}.log", done.stdout.decode("utf-8", "replace")
