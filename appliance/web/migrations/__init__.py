"""Schema migrations: numbered modules ``mNNNN_name.py`` with ``up(db, migrator)``.

Applied versions are recorded in ``schema_version``; each migration runs in its own
transaction, so a failure leaves the schema at the last good version.

A migration describes the schema as it was at its step, never by importing the
application's models: those change later, and an old migration that followed them
would create today's tables, so upgrading a real older database would run steps
nobody ever tested. Each module declares frozen copies of its tables
(``FrozenModel`` subclasses, written once and never edited) and creates them on
the database it is given with ``create_frozen``. A later change to a model gets
a new migration; tests/test_migrations.py fails until it has one.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from peewee import CharField, DateTimeField, IntegerField, Model
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

from appliance.web.db import database_proxy
from appliance.web.models.base import utcnow

_NAME = re.compile(r"^m(\d{4})_(\w+)$")


class SchemaVersion(Model):
    version = IntegerField(primary_key=True)
    name = CharField(max_length=100)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        database = database_proxy
        table_name = "schema_version"


def available() -> list[tuple[int, str]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        match = _NAME.match(info.name)
        if match:
            found.append((int(match.group(1)), info.name))
    return sorted(found)


def migrator_for(db):
    from peewee import PostgresqlDatabase

    return PostgresqlMigrator(db) if isinstance(db, PostgresqlDatabase) else SqliteMigrator(db)


def current_version(db) -> int:
    if not db.table_exists("schema_version"):
        return 0
    last = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return last.version if last else 0


def pending(db) -> list[tuple[int, str]]:
    applied = set()
    if db.table_exists("schema_version"):
        applied = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
    return [(v, name) for v, name in available() if v not in applied]


def upgrade(db, progress=None, keyring=None) -> list[str]:
    """Apply every pending migration in order; return the names applied.

    ``keyring``: the encryption keys, for a step that seals existing values (its module
    says ``NEEDS_KEYS = True``); the process-wide key ring when none is given.
    """
    db.create_tables([SchemaVersion], safe=True)
    migrator = migrator_for(db)
    done = []
    for version, name in pending(db):
        module = importlib.import_module(f"{__name__}.{name}")
        if progress:
            progress(f"applying {name}")
        with db.atomic():
            if getattr(module, "NEEDS_KEYS", False):
                from appliance.web.crypto.keyring import keyring_or_none

                module.up(db, migrator, keyring=keyring or keyring_or_none())
            else:
                module.up(db, migrator)
            SchemaVersion.create(version=version, name=name)
        done.append(name)
    return done


class FrozenModel(Model):
    """Base of the table copies inside migrations: bound to no database until ``create_frozen``.

    Defaults are not repeated there: peewee applies them in Python and never writes
    them into the schema, so a migration that inserts rows names every value.
    Index names are "<table>_<columns>", as the application's models name them.
    """

    class Meta:
        legacy_table_names = False


def create_frozen(db, models) -> None:
    """Create the frozen ``models`` (and nothing else) on ``db``, leaving them unbound afterwards."""
    with db.bind_ctx(models):
        db.create_tables(models, safe=True)


def ensure_column(db, migrator, table: str, column: str, field) -> bool:
    """Add ``column`` (declared by the peewee ``field``) to ``table`` unless it is already there."""
    from playhouse.migrate import migrate

    if column in {c.name for c in db.get_columns(table)}:
        return False
    migrate(migrator.add_column(table, column, field))
    return True
