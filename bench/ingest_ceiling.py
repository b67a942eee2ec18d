"""The ceiling for bench/bench_ingest.py: the least a signed-webhook endpoint can do.

A Flask app that checks the delivery's HMAC (the same scheme as the appliance's
webhook channel: ``X-Timestamp`` and ``X-Signature: sha256=HMAC(secret, ts + "." +
body)``), then inserts one 200-byte row through peewee and answers 202. SQLite gets
the appliance's pragmas (WAL, synchronous=normal) and ``BEGIN IMMEDIATE``; both databases
a connection pool, as the appliance has, so the ceiling is the best the stack can do.

Served the same way as the appliance (waitress or gunicorn), configured by the
environment: ``CEILING_DATABASE_URL`` and ``CEILING_SECRET``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import unquote, urlparse

from flask import Flask, jsonify, request
from peewee import BlobField, DateTimeField, Model
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

PRAGMAS = {"journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal", "busy_timeout": 10000}


def open_database(url: str):
    if url.startswith("sqlite:///"):
        return PooledSqliteDatabase(url[len("sqlite:///"):], pragmas=PRAGMAS, check_same_thread=False,
                                    max_connections=None, stale_timeout=300)
    parsed = urlparse(url)
    return PooledPostgresqlDatabase(unquote(parsed.path.lstrip("/")), user=unquote(parsed.username or ""),
                                    password=unquote(parsed.password or ""), host=parsed.hostname,
                                    port=parsed.port, max_connections=8, stale_timeout=300)


def _row_model(database):
    class Row(Model):
        body = BlobField()
        at = DateTimeField()

        class Meta:
            table_name = "ceiling_row"

    Row.bind(database)
    return Row


def create_schema(url: str) -> None:
    """Once, before the servers start (gunicorn's workers would race to create it)."""
    database = open_database(url)
    with database:
        database.create_tables([_row_model(database)], safe=True)
    database.close_all()


def create_app():
    database = open_database(os.environ["CEILING_DATABASE_URL"])
    secret = os.environ["CEILING_SECRET"].encode()
    Row = _row_model(database)
    app = Flask(__name__)

    @app.post("/hooks/<key>")
    def hook(key):
        raw = request.get_data(cache=False)
        stamp = request.headers.get("X-Timestamp", "")
        expected = "sha256=" + hmac.new(secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Signature", ""), expected):
            return jsonify(error="bad signature"), 401
        if abs(time.time() - int(stamp)) > 300:
            return jsonify(error="stale"), 401
        atomic = database.atomic() if isinstance(database, PooledPostgresqlDatabase) else database.atomic("IMMEDIATE")
        with database.connection_context(), atomic:  # a pooled connection is handed back on the way out
            row = Row.create(body=raw[:200].ljust(200, b" "), at=time.strftime("%Y-%m-%d %H:%M:%S"))
        return jsonify(stored=1, id=row.id), 202

    return app
