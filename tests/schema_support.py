"""Reading a database's schema back from its catalog, on SQLite and PostgreSQL.

``exact_schema`` is for comparing two databases built by the same migrations (an
upgraded one and a fresh one): column order, names of indexes and constraints,
and on SQLite the stored CREATE statements all count. ``logical_schema`` is for
comparing the migrated schema with the one today's models would create: column
order and the names the engine picks for constraints do not count, types,
nullability, defaults, keys and indexes do.
"""

from __future__ import annotations

import importlib
import pkgutil

from peewee import Model, PostgresqlDatabase, sort_models

from appliance.web.db import database_proxy


def _is_postgres(db) -> bool:
    return isinstance(db, PostgresqlDatabase)


def _columns(db, table: str) -> list[tuple]:
    """(name, type, not null, default) in table order."""
    if _is_postgres(db):
        return [tuple(row) for row in db.execute_sql(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (f'"{table}"',)).fetchall()]
    return [(name, type_, bool(notnull), default)
            for _, name, type_, notnull, default, _ in db.execute_sql(f'PRAGMA table_info("{table}")').fetchall()]


def _constraints(db, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the primary key, foreign keys (with ON DELETE) and unique/check constraints."""
    if _is_postgres(db):
        return sorted(tuple(row) for row in db.execute_sql(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass",
            (f'"{table}"',)).fetchall())
    pk = [name for _, name, _, _, _, pk in sorted(db.execute_sql(f'PRAGMA table_info("{table}")').fetchall(),
                                                  key=lambda row: row[5]) if pk]
    found = [("", f"PRIMARY KEY ({', '.join(pk)})")] if pk else []
    for _, _, dest, column, dest_column, on_update, on_delete, _ in db.execute_sql(
            f'PRAGMA foreign_key_list("{table}")').fetchall():
        found.append(("", f"FOREIGN KEY ({column}) REFERENCES {dest}({dest_column}) "
                          f"ON UPDATE {on_update} ON DELETE {on_delete}"))
    return sorted(found)


def _indexes(db, table: str) -> list[tuple]:
    """(name, columns, unique, definition)."""
    return sorted((ix.name, tuple(ix.columns), bool(ix.unique), ix.sql) for ix in db.get_indexes(table))


def _table_ddl(db, table: str) -> str | None:
    if _is_postgres(db):
        return None  # PostgreSQL keeps no statement text; the catalog rows above are the definition
    row = db.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row[0]


def exact_schema(db) -> dict[str, dict]:
    return {
        table: {
            "columns": _columns(db, table),
            "constraints": _constraints(db, table),
            "indexes": _indexes(db, table),
            "ddl": _table_ddl(db, table),
        }
        for table in sorted(db.get_tables())
    }


def logical_schema(db, skip=("schema_version",)) -> dict[str, dict]:
    return {
        table: {
            "columns": {name: (type_, notnull, default) for name, type_, notnull, default in _columns(db, table)},
            "constraints": {definition for _, definition in _constraints(db, table)},
            "indexes": {(columns, unique) for _, columns, unique, _ in _indexes(db, table)},
        }
        for table in sorted(db.get_tables())
        if table not in skip
    }


def schema_differences(wanted: dict, found: dict) -> list[str]:
    """Readable lines for every way ``found`` (a logical schema) differs from ``wanted``."""
    lines = []
    for table in sorted(wanted.keys() | found.keys()):
        if table not in found:
            lines.append(f"table {table}: wanted, not there")
            continue
        if table not in wanted:
            lines.append(f"table {table}: there, not wanted")
            continue
        want, have = wanted[table]["columns"], found[table]["columns"]
        for column in sorted(want.keys() | have.keys()):
            if want.get(column) != have.get(column):
                lines.append(f"{table}.{column}: wanted (type, not null, default) {want.get(column)}, "
                             f"found {have.get(column)}")
        for part, label in (("constraints", "constraint"), ("indexes", "index (columns, unique)")):
            for item in sorted(wanted[table][part] - found[table][part], key=repr):
                lines.append(f"{table}: {label} {item} wanted, not there")
            for item in sorted(found[table][part] - wanted[table][part], key=repr):
                lines.append(f"{table}: {label} {item} there, not wanted")
    return lines


def app_models() -> list[type[Model]]:
    """Every table model of the web app: the model classes in appliance.web.models and the business layer."""
    import appliance.web.models as package
    from appliance.web.models.base import BaseModel

    found = {}
    modules = [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]
    modules.append("appliance.web.business.models")  # the business layer keeps its tables in its own package
    for name in modules:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Model) and obj not in (Model, BaseModel)
                    and obj._meta.database is database_proxy):
                found[obj] = None
    return list(found)


def create_from_models(db, models) -> None:
    """Create the tables ``models`` declare on ``db`` without binding the models to it.

    Binding would move them off the database proxy, and binding back re-runs
    peewee's per-database hooks (the BLOB type) against whatever the proxy holds.
    """
    from peewee import SchemaManager

    for model in sort_models(models):
        SchemaManager(model, database=db).create_all(safe=False)


def table_rows(db, skip=("schema_version",)) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table's column names and rows (bytes for BLOB/bytea), ordered, for before/after comparisons."""
    out = {}
    for table in sorted(db.get_tables()):
        if table in skip:
            continue
        cursor = db.execute_sql(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        rows = [tuple(bytes(v) if isinstance(v, memoryview | bytearray) else v for v in row)
                for row in cursor.fetchall()]
        out[table] = (names, sorted(rows, key=repr))
    return out
