"""Schema migrations: numbered modules ``mNNNN_name.py`` with ``up(db, migrator)``.

Applied versions are recorded in ``schema_version``; each migration runs in its own
transaction, so a failure leaves the schema at the last good version.
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


def upgrade(db, progress=None) -> list[str]:
    """Apply every pending migration in order; return the names applied."""
    db.create_tables([SchemaVersion], safe=True)
    migrator = migrator_for(db)
    done = []
    for version, name in pending(db):
        module = importlib.import_module(f"{__name__}.{name}")
        if progress:
            progress(f"applying {name}")
        with db.atomic():
            module.up(db, migrator)
            SchemaVersion.create(version=version, name=name)
        done.append(name)
    return done


def ensure_column(db, migrator, model, field_name: str) -> bool:
    """Add ``model.field_name`` to its table unless it is already there."""
    from playhouse.migrate import migrate

    table = model._meta.table_name
    field = model._meta.fields[field_name]
    if field.column_name in {c.name for c in db.get_columns(table)}:
        return False
    migrate(migrator.add_column(table, field.column_name, field))
    return True
