"""create / list / verify / restore / prune, for the command line and the playbooks.

Restore works in two phases so that a refusal changes nothing: first every part is
decrypted into a staging directory and checked (master key id, manifest MAC, every
chunk's tag, every part's SHA-256, schema not newer than this code, the dump readable
by its engine); only then is the live database replaced, migrated forward when the
archive is older, and the installation identity put back.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import appliance
from appliance.core import clock
from appliance.core.backup import archive
from appliance.core.backup.archive import ArchiveError, ArchiveReader, ArchiveWriter
from appliance.core.backup.retention import Candidate, plan_prune
from appliance.core.identity import ID_FILE, KEY_FILE
from appliance.web.backup import dumps, shred
from appliance.web.backup.errors import BackupError

DATABASE_PART = "database"
IDENTITY_PART = "identity"
# Files carried so a restored host keeps its licence binding and its sync identity.
# The master key and the session key are deliberately not among them.
IDENTITY_FILES = (ID_FILE, KEY_FILE)


@dataclass
class BackupInfo:
    path: Path
    size: int
    created_at: dt.datetime | None
    schema_version: int | None
    database_kind: str | None
    good: bool
    problem: str = ""


def settings(instance) -> dict:
    return instance["backup"]


def backup_dir(instance) -> Path:
    path = instance.path(settings(instance)["directory"])
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _master(instance, passphrase=None):
    from appliance.web.crypto.master import load_master_key

    return load_master_key(instance, passphrase=passphrase)


@contextmanager
def _staging(instance):
    """A private scratch directory beside the backups (same disk: renames stay atomic)."""
    base = backup_dir(instance)
    path = Path(tempfile.mkdtemp(prefix=".staging-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _latest_schema() -> int:
    from appliance.web.migrations import available

    return max(v for v, _ in available())


# -- create ---------------------------------------------------------------------------------

def create_backup(instance, progress=None, passphrase=None,
                  out_dir: Path | None = None) -> tuple[Path, archive.Manifest]:
    """Take a consistent copy of the database, encrypt it with the identity into one archive."""
    master = _master(instance, passphrase)
    url = instance.database_url
    kind = dumps.kind_of(url)
    now = clock.now()
    target_dir = Path(out_dir) if out_dir else backup_dir(instance)
    name = f"appliance-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}{archive.SUFFIX}"
    writer = ArchiveWriter(target_dir / name, master.key, master.key_id,
                           chunk_size=int(settings(instance)["chunk_bytes"]))
    try:
        with _staging(instance) as staging:
            if kind == "sqlite":
                copy = staging / "database.sqlite"
                dumps.sqlite_snapshot(url, copy)
                schema = dumps.sqlite_schema_version(copy)
                with open(copy, "rb") as fh:
                    writer.add_part(DATABASE_PART, fh, progress)
            else:
                schema = _pg_schema_version(url)
                bindir = dumps.pg_bindir(settings(instance)["pg_bindir"])
                with open(staging / "pg_dump.log", "w+b") as log:
                    proc = dumps.pg_dump_process(url, bindir, log)
                    # Encrypted as it streams out: no plaintext dump ever lands on disk.
                    writer.add_part(DATABASE_PART, proc.stdout, progress)
                    if proc.wait() != 0:
                        log.seek(0)
                        raise BackupError("pg_dump failed: " + log.read().decode(errors="replace").strip()[:800])
        writer.add_part(IDENTITY_PART, io.BytesIO(_identity_document(instance)))
        manifest = writer.close(
            created_at=now.astimezone(dt.UTC).isoformat(), app_version=appliance.__version__,
            schema_version=schema, master_key_id=master.key_id, database_kind=kind,
            extra={"shredded_tenants": sorted(shred.ledger(instance))},
        )
    except BaseException:
        writer.abort()
        raise
    return target_dir / name, manifest


def _pg_schema_version(url: str) -> int:
    from appliance.web import db as dbmod
    from appliance.web.migrations import SchemaVersion, current_version

    # Its own connection, with the model bound to it: the command line has no app,
    # so the database proxy is not initialised when `backup create` runs from a timer.
    database = dbmod.open_database(url)
    with database.connection_context(), database.bind_ctx([SchemaVersion]):
        return current_version(database) if database.table_exists("schema_version") else 0


def _identity_document(instance) -> bytes:
    files = {}
    for rel in IDENTITY_FILES:
        path = instance.home / rel
        if path.exists():
            files[rel] = base64.b64encode(path.read_bytes()).decode()
    return json.dumps({"files": files}).encode()


# -- list / open ------------------------------------------------------------------------------

def open_archive(instance, path: Path, passphrase=None, master=None) -> ArchiveReader:
    master = master or _master(instance, passphrase)
    try:
        return ArchiveReader(Path(path), master.key, master.key_id)
    except ArchiveError as exc:
        raise BackupError(str(exc)) from exc


def list_backups(instance, passphrase=None) -> list[BackupInfo]:
    """Every archive in the backup directory, newest first, each with its manifest checked."""
    master = _master(instance, passphrase)
    found = []
    for path in sorted(backup_dir(instance).glob("*" + archive.SUFFIX)):
        size = path.stat().st_size
        try:
            m = ArchiveReader(path, master.key, master.key_id).manifest
            found.append(BackupInfo(path, size, dt.datetime.fromisoformat(m.created_at), m.schema_version,
                                    m.database_kind, True))
        except ArchiveError as exc:
            found.append(BackupInfo(path, size, _created_from_name(path), None, None, False, str(exc)))
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda b: b.created_at or epoch, reverse=True)


def _created_from_name(path: Path) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(path.name.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except (IndexError, ValueError):
        return None


# -- checks shared by verify and restore ---------------------------------------------------------

def _stage(instance, reader: ArchiveReader, staging: Path, progress=None) -> tuple[Path, dict]:
    """Decrypt and check everything; raise BackupError before anything live is touched."""
    m = reader.manifest
    latest = _latest_schema()
    if m.schema_version > latest:
        raise BackupError(
            f"{reader.path} holds schema version {m.schema_version}, newer than this software knows "
            f"({latest}, version {appliance.__version__}): install the version that made it "
            f"({m.app_version}) or later, then restore. Nothing was changed.")
    kind = dumps.kind_of(instance.database_url)
    if m.database_kind != kind:
        raise BackupError(f"{reader.path} is a {m.database_kind} backup; this instance uses {kind}. "
                          "Nothing was changed.")
    try:
        db_file = reader.extract_part(DATABASE_PART, staging / "database", progress)
        identity = json.loads(b"".join(reader.iter_part(IDENTITY_PART)))
    except ArchiveError as exc:
        raise BackupError(str(exc) + " Nothing was changed.") from exc
    if kind == "sqlite":
        dumps.sqlite_check(db_file)
    else:
        dumps.pg_check_dump(db_file, dumps.pg_bindir(settings(instance)["pg_bindir"]))
    return db_file, identity


def _keys(master):
    """A key ring on the restored database's own key table, for a migration that seals values."""
    from appliance.web.crypto.keyring import KeyRing

    return KeyRing(master)


def _migrate_and_shred(url: str, shredded: set[int], master) -> list[str]:
    from appliance.web import db as dbmod
    from appliance.web.migrations import upgrade

    database = dbmod.bind(url)
    with database.connection_context():
        applied = upgrade(database, keyring=_keys(master))
        shred.apply(shredded)
    return applied


# -- verify -----------------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    path: Path
    schema_version: int
    tables: int
    rows: int


def verify_backup(instance, path: Path, progress=None, passphrase=None) -> VerifyResult:
    """Restore into a scratch database (never the live one), migrate it, and count what is there."""
    master = _master(instance, passphrase)
    reader = open_archive(instance, path, master=master)
    url = instance.database_url
    with _staging(instance) as staging:
        db_file, _ = _stage(instance, reader, staging, progress)
        if dumps.kind_of(url) == "sqlite":
            scratch_url = "sqlite:///" + str(db_file)
            return _count(path, scratch_url, reader, master)
        scratch = f"appliance_verify_{secrets.token_hex(4)}"
        bindir = dumps.pg_bindir(settings(instance)["pg_bindir"])
        try:
            dumps.pg_admin(url, f'CREATE DATABASE "{scratch}"')
        except Exception as exc:  # no CREATEDB right: say so instead of a driver traceback
            raise BackupError(f"verify needs a scratch database and could not create one ({exc}); "
                              "grant the database user CREATEDB.") from None
        try:
            scratch_url = dumps.with_database(url, scratch)
            dumps.pg_restore_into(db_file, scratch_url, bindir)
            return _count(path, scratch_url, reader, master)
        finally:
            from appliance.web import db as dbmod

            dbmod.bind(url)  # the scratch database is about to go; leave the proxy on the live one
            dumps.pg_admin(url, f'DROP DATABASE IF EXISTS "{scratch}"')


def _count(path, scratch_url: str, reader: ArchiveReader, master) -> VerifyResult:
    from appliance.web import db as dbmod
    from appliance.web.crypto.tables import CryptoMaster
    from appliance.web.migrations import current_version, upgrade

    database = dbmod.bind(scratch_url)
    try:
        with database.connection_context():
            upgrade(database, keyring=_keys(master))
            row = CryptoMaster.select().first() if database.table_exists("crypto_master") else None
            if row is not None and row.master_key_id != master.key_id:
                raise BackupError(f"{path}: its database expects master key {row.master_key_id}, "
                                  f"the archive says {master.key_id}.")
            tables = database.get_tables()
            rows = sum(database.execute_sql(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
            return VerifyResult(Path(path), current_version(database), len(tables), rows)
    finally:
        database.close()


# -- restore ------------------------------------------------------------------------------------------

@dataclass
class RestoreResult:
    path: Path
    schema_from: int
    migrations_applied: list[str]
    identity_restored: list[str]


def restore_backup(instance, path: Path, progress=None, passphrase=None) -> RestoreResult:
    """Replace this instance's database (and identity) by the archive's. Stop the services first."""
    master = _master(instance, passphrase)
    reader = open_archive(instance, path, master=master)
    url = instance.database_url
    shredded = shred.ledger(instance) | set(reader.manifest.extra.get("shredded_tenants", []))
    with _staging(instance) as staging:
        db_file, identity = _stage(instance, reader, staging, progress)
        if dumps.kind_of(url) == "sqlite":
            # Migrated while still staged, so the live file is swapped for a finished one.
            applied = _migrate_and_shred("sqlite:///" + str(db_file), shredded, master)
            from appliance.web import db as dbmod

            dbmod.database_proxy.obj.close()
            dumps.sqlite_install(db_file, url)
            dbmod.bind(url)
        else:
            dumps.pg_restore_into(db_file, url, dumps.pg_bindir(settings(instance)["pg_bindir"]))
            applied = _migrate_and_shred(url, shredded, master)
    restored = _restore_identity(instance, identity)
    shred.record(instance, shredded)
    return RestoreResult(Path(path), reader.manifest.schema_version, applied, restored)


def _restore_identity(instance, identity: dict) -> list[str]:
    from appliance.core.config import write_secret_file

    restored = []
    stamp = clock.now().strftime("%Y%m%d%H%M%S")
    for rel, b64 in identity.get("files", {}).items():
        if rel not in IDENTITY_FILES:
            continue  # only the files we put in
        data = base64.b64decode(b64)
        path = instance.home / rel
        if path.exists() and path.read_bytes() == data:
            continue
        if path.exists():
            retired = instance.home / "keys" / "retired"
            retired.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.replace(retired / f"{path.name}.replaced-{stamp}")
        write_secret_file(path, data, overwrite=True)
        restored.append(rel)
    return restored


# -- prune --------------------------------------------------------------------------------------------

def prune_backups(instance, dry_run=False, passphrase=None) -> tuple[list[BackupInfo], list[BackupInfo]]:
    """Delete archives past retention; monthly ones and the newest good one stay."""
    cfg = settings(instance)
    backups = list_backups(instance, passphrase)
    by_name = {b.path.name: b for b in backups}
    candidates = [Candidate(b.path.name, b.created_at or clock.now(), b.good) for b in backups]
    months = int(cfg["archive_retention_months"]) if cfg["archive"] else 0
    keep, delete = plan_prune(candidates, clock.now(), int(cfg["retention_days"]), months)
    if not dry_run:
        for c in delete:
            by_name[c.name].path.unlink(missing_ok=True)
    return [by_name[c.name] for c in keep], [by_name[c.name] for c in delete]
