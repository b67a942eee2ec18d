"""The base model: every table binds to the database proxy set up by the factory."""

from __future__ import annotations

import datetime as dt

from peewee import Model, Node, PostgresqlDatabase

from appliance.core import clock
from appliance.web.db import database_proxy


def utcnow() -> dt.datetime:
    """Naive UTC timestamps everywhere: SQLite and PostgreSQL compare them alike."""
    return clock.naive_now()


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False

    def save(self, force_insert=False, only=None):
        """As peewee's, but a new row's INSERT is composed once per set of columns.

        Composing SQL in peewee costs more than running a small INSERT on SQLite (py-spy
        of webhook posts); the statement sent is the one peewee would send.
        """
        meta = self._meta
        if (only is not None or not meta.auto_increment or self._pk is not None
                or meta.composite_key):
            return super().save(force_insert=force_insert, only=only)
        field_dict = self.__data__.copy()
        self._populate_unsaved_relations(field_dict)
        field_dict.pop(meta.primary_key.name, None)
        if any(isinstance(v, Node) for v in field_dict.values()):
            return super().save(force_insert=force_insert, only=only)
        database = meta.database.obj if hasattr(meta.database, "obj") else meta.database
        names = tuple(field_dict)
        key = (type(database), type(self), names)
        sql = _INSERTS.get(key)
        if sql is None:
            sql = _INSERTS[key] = _insert_sql(database, meta, names)
        fields = meta.fields
        cursor = database.execute_sql(sql, [fields[n].db_value(v) for n, v in field_dict.items()])
        pk = cursor.fetchone()[0] if isinstance(database, PostgresqlDatabase) else cursor.lastrowid
        self._pk = pk
        self._dirty.discard(meta.primary_key.name)
        self._dirty -= set(field_dict)
        return 1


_INSERTS: dict = {}  # (database class, model, column names) -> INSERT statement


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'  # as peewee quotes on SQLite and PostgreSQL


def _insert_sql(database, meta, names: tuple) -> str:
    table = _quote(meta.table_name)
    columns = ", ".join(_quote(meta.fields[n].column_name) for n in names)
    values = ", ".join([database.param] * len(names))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({values})"
    if isinstance(database, PostgresqlDatabase):
        sql += f" RETURNING {table}.{_quote(meta.primary_key.column_name)}"
    return sql
