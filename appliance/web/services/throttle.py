"""Throttling counted in the database, so every app host sees the same counts.

Two shapes of limit:

* ``lock_wait`` / ``note_failure``: failures (logins, TOTP codes) lock a subject after
  ``attempts`` within ``window`` seconds; each further failure doubles the lock, up to
  ``throttle.backoff_max_seconds``. A success clears the subject (``clear``).
* ``take``: a plain rate (new widget conversations, webhook calls): at most ``limit``
  events per ``window``; the one over answers 429 with ``Retry-After``.

Subjects are stored as SHA-256 digests: counters never hold an address or an e-mail.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from flask import abort, current_app, jsonify, request

from appliance.web.db import database_proxy, write_transaction
from appliance.web.models.base import utcnow
from appliance.web.models.security import ThrottleEvent


def settings() -> dict:
    return current_app.extensions["appliance_instance"].settings


def limits() -> dict:
    return settings()["throttle"]


def client_address() -> str:
    """The client's address: the peer, or what the trusted reverse proxies say it is."""
    hops = int(settings()["trusted_proxy_hops"])
    if hops > 0:
        forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return (request.remote_addr or "unknown")[:64]


def digest(*parts) -> str:
    return hashlib.sha256("\x1f".join(str(p).strip().lower() for p in parts).encode()).hexdigest()


def _since(seconds: int) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def _events(scope: str, key: str, seconds: int):
    return ThrottleEvent.select().where(ThrottleEvent.scope == scope, ThrottleEvent.key == key,
                                        ThrottleEvent.at > _since(seconds))


def lock_wait(scope: str, key: str, attempts: int, window: int) -> int:
    """Seconds until ``key`` may try again (0: now), with exponential backoff.

    ``attempts`` failures lock ``key`` for ``window`` seconds after the last one; each
    further failure doubles that; failures older than the longest lock are forgotten.
    """
    if attempts <= 0:
        return 0
    backoff_max = max(window, int(limits()["backoff_max_seconds"]))
    recent = list(_events(scope, key, backoff_max).order_by(ThrottleEvent.at.desc()).limit(attempts + 20))
    if len(recent) < attempts:
        return 0
    lock = min(backoff_max, window * 2 ** max(0, min(len(recent) - attempts, 20)))
    unlock = recent[0].at + dt.timedelta(seconds=lock)
    return max(0, int((unlock - utcnow()).total_seconds() + 0.999))


def note_failure(scope: str, key: str) -> None:
    ThrottleEvent.create(scope=scope, key=key, at=utcnow())


def clear(scope: str, key: str) -> None:
    ThrottleEvent.delete().where(ThrottleEvent.scope == scope, ThrottleEvent.key == key).execute()


def take(scope: str, key: str, limit: int, window: int, what: str) -> None:
    """Count one event for ``key``; refuse (429) when ``limit`` were counted in ``window``."""
    if limit <= 0:
        return
    if _count_unless_full(scope, key, limit, window):
        return
    oldest = _events(scope, key, window).order_by(ThrottleEvent.at.asc()).first()
    wait = (oldest.at + dt.timedelta(seconds=window) - utcnow()).total_seconds() if oldest else 0
    retry = max(1, int(wait + 0.999))
    abort(too_many(f"Too many {what}; try again in {retry} seconds.", retry))


def _count_unless_full(scope: str, key: str, limit: int, window: int) -> bool:
    """Count one event unless ``limit`` are counted in ``window``: one statement either way.

    The inner count stops at ``limit`` rows, so a busy subject costs no more than the
    limit. As before, two requests at the last free place may both get in: a rate, not a quota.
    """
    if database_proxy.in_transaction():
        return _count_statement(scope, key, limit, window)
    # A write: on SQLite it queues with this process's other writers (write_transaction)
    # instead of sleeping in SQLite's busy handler while they commit.
    with write_transaction():
        return _count_statement(scope, key, limit, window)


def _count_statement(scope: str, key: str, limit: int, window: int) -> bool:
    p = database_proxy.param
    cursor = database_proxy.execute_sql(
        f'INSERT INTO throttle_event (scope, "key", at) SELECT {p}, {p}, {p} WHERE (SELECT COUNT(*) FROM '
        f'(SELECT 1 FROM throttle_event WHERE scope = {p} AND "key" = {p} AND at > {p} LIMIT {p}) AS recent) < {p}',
        (scope, key, utcnow(), scope, key, _since(window), limit, limit))
    return cursor.rowcount == 1


def too_many(message: str, retry: int):
    """A finished 429 answer (JSON, with Retry-After), for ``abort``."""
    response = jsonify(error="Too Many Requests", message=message, status=429)
    response.status_code = 429
    response.headers["Retry-After"] = str(retry)
    return response


def prune(older_than_seconds: int | None = None) -> int:
    """Delete counters no limit can still see (run by the worker)."""
    cfg = limits()
    horizon = older_than_seconds or max(
        int(cfg["backoff_max_seconds"]), int(settings()["login_throttle_window_seconds"]),
        int(cfg["widget_window_seconds"]), int(cfg["webhook_window_seconds"]))
    return ThrottleEvent.delete().where(ThrottleEvent.at <= _since(horizon)).execute()


def security_cleanup_job(app) -> None:
    """Drop throttle counters no limit can still see, and sessions that can no longer be resumed."""
    from appliance.web.services.sessions import prune_sessions

    prune()
    prune_sessions()
