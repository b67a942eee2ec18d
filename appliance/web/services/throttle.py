"""Throttling counted in the database, so every app host sees the same counts.

Two shapes of limit:

* ``lock_wait`` / ``note_failure``: failures (logins, TOTP codes) lock a subject after
  ``attempts`` within ``window`` seconds; each further failure doubles the lock, up to
  ``throttle.backoff_max_seconds``. A success clears the subject (``clear``).
* ``take``: a plain rate (new widget conversations, webhook calls): at most ``limit``
  events per ``window``; the one over answers 429 with ``Retry-After``. A rate is on the
  path of every inbound post, so a process counts its own events and writes them at most
  every ``SYNC_SECONDS`` (:class:`LocalRates`): other hosts see them that much later,
  and only the database's count ever refuses.

Subjects are stored as SHA-256 digests: counters never hold an address or an e-mail.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

from flask import abort, current_app, jsonify, request

from appliance.web.db import database_proxy, is_postgres, write_transaction
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


# How stale one process's rates may be in the database (and its own view of other hosts').
SYNC_SECONDS = 1.0


class _Rate:
    """One subject's rate as this process sees it."""

    __slots__ = ("counted", "lock", "pending", "synced_at")

    def __init__(self):
        self.lock = threading.Lock()
        self.counted = 0  # events in the window, as the database counted them at synced_at
        self.synced_at: dt.datetime | None = None
        self.pending: list[dt.datetime] = []  # admitted since, not yet written


class LocalRates:
    """This process's rates (one per app, in ``app.extensions``), written in batches.

    An event is admitted here, with no statement, while the last count from the database
    plus those admitted since leave room, for at most ``SYNC_SECONDS``; otherwise (the
    limit near, or the count stale) the pending events are written and the database
    decides, as it would alone. So a process never refuses on its own count, and
    other processes see its events at most ``SYNC_SECONDS`` late.
    """

    MAX_SUBJECTS = 10_000  # beyond it, subjects with nothing pending are forgotten

    def __init__(self):
        self._rates: dict[tuple[str, str], _Rate] = {}
        self._lock = threading.Lock()

    def rate(self, scope: str, key: str) -> _Rate:
        rate = self._rates.get((scope, key))
        if rate is None:
            with self._lock:
                if len(self._rates) >= self.MAX_SUBJECTS:
                    self._rates = {k: r for k, r in self._rates.items() if r.pending}
                rate = self._rates.setdefault((scope, key), _Rate())
        return rate


def _local_rates() -> LocalRates:
    rates = current_app.extensions.get("throttle.rates")
    if rates is None:
        rates = current_app.extensions.setdefault("throttle.rates", LocalRates())
    return rates


def take(scope: str, key: str, limit: int, window: int, what: str) -> None:
    """Count one event for ``key``; refuse (429) when ``limit`` were counted in ``window``."""
    if limit <= 0:
        return
    rate = _local_rates().rate(scope, key)
    now = utcnow()
    with rate.lock:
        fresh = rate.synced_at is not None and abs((now - rate.synced_at).total_seconds()) < SYNC_SECONDS
        if fresh and rate.counted + len(rate.pending) + 1 < limit:  # the last place: the database decides
            rate.pending.append(now)
            return
        admitted, rate.counted = _sync(scope, key, limit, window, rate.pending)
        rate.pending, rate.synced_at = [], now
    if admitted:
        return
    oldest = _events(scope, key, window).order_by(ThrottleEvent.at.asc()).first()
    wait = (oldest.at + dt.timedelta(seconds=window) - utcnow()).total_seconds() if oldest else 0
    retry = max(1, int(wait + 0.999))
    abort(too_many(f"Too many {what}; try again in {retry} seconds.", retry))


def _sync(scope: str, key: str, limit: int, window: int, pending: list) -> tuple[bool, int]:
    """Write ``pending``, count this event unless ``limit`` are counted: (admitted, count now)."""
    if database_proxy.in_transaction():
        return _sync_statements(scope, key, limit, window, pending)
    # A write: on SQLite it queues with this process's other writers (write_transaction)
    # instead of sleeping in SQLite's busy handler while they commit.
    with write_transaction():
        return _sync_statements(scope, key, limit, window, pending)


def _sync_statements(scope, key, limit, window, pending) -> tuple[bool, int]:
    if pending:
        _write_events(scope, key, pending)
    admitted = _count_statement(scope, key, limit, window)
    p = database_proxy.param
    counted = database_proxy.execute_sql(
        f'SELECT COUNT(*) FROM (SELECT 1 FROM throttle_event WHERE scope = {p} AND "key" = {p} AND at > {p} '
        f"LIMIT {p}) AS recent", (scope, key, _since(window), limit)).fetchone()[0]
    return admitted, counted


def _write_events(scope: str, key: str, ats: list) -> None:
    at = ThrottleEvent.at.db_value
    if is_postgres():
        database_proxy.execute_sql('INSERT INTO throttle_event (scope, "key", at) '
                                   "SELECT %s, %s, unnest(%s::timestamp[])", (scope, key, [at(a) for a in ats]))
    else:
        database_proxy.cursor().executemany('INSERT INTO throttle_event (scope, "key", at) VALUES (?, ?, ?)',
                                            [(scope, key, at(a)) for a in ats])


def _count_statement(scope: str, key: str, limit: int, window: int) -> bool:
    """Count one event unless ``limit`` are counted in ``window``: one statement either way.

    The inner count stops at ``limit`` rows, so a busy subject costs no more than the
    limit. As before, two requests at the last free place may both get in: a rate, not a quota.
    """
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
