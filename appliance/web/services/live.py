"""Live updates: the change feed behind the event streams, and agents' presence.

Every change an open page should show (a new message, a status, an assignment) is
published as a ``LiveEvent`` row in the same transaction as the change itself. The
streams poll that table by id: a cheap indexed range read, the same on SQLite and
PostgreSQL, and every gunicorn worker and app host sees every event because the
database is the one thing they all share (docs/ARCHITECTURE.md, "Live updates").
Rows carry ids only, never content: a page that hears of a change reloads the part
it shows through its normal, access-checked view.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from flask import current_app, has_app_context
from peewee import Case, fn

from appliance.core.config import DEFAULTS
from appliance.web.models.base import utcnow
from appliance.web.models.live import LiveEvent, Presence
from appliance.web.models.tenancy import Tenant

BATCH = 100  # events sent per poll at most; a client far behind catches up over a few polls


def publish(tenant_id: int, conversation_id: int, kind: str, *, message_id: int | None = None,
            direction: str | None = None) -> None:
    LiveEvent.create(tenant=tenant_id, conversation_id=conversation_id, kind=kind,
                     message_id=message_id, direction=direction)


def publish_all(events: list[dict]) -> None:
    """Several events in one statement, in order: dicts of ``publish``'s arguments."""
    now = utcnow()
    LiveEvent.insert_many([{"tenant": e["tenant_id"], "conversation_id": e["conversation_id"], "kind": e["kind"],
                            "message_id": e.get("message_id"), "direction": e.get("direction"), "created_at": now}
                           for e in events]).execute()


def newest_id() -> int:
    return LiveEvent.select(fn.MAX(LiveEvent.id)).scalar() or 0


def parse_last_id(raw: str | None) -> int | None:
    """The Last-Event-ID a reconnecting browser sends back (None: start from now)."""
    raw = (raw or "").strip()
    return int(raw) if raw.isdigit() and len(raw) <= 18 else None


@dataclass(frozen=True)
class Scope:
    """Which events one stream may see: a tenant's (and its sub-accounts'), or one conversation's."""

    tenant_id: int | None = None
    tenant_path: str | None = None  # set: the tenant and every sub-account below it
    conversation_id: int | None = None
    visitor: bool = False  # the widget: the contact's own conversation, no internal notes

    def where(self):
        cond = LiveEvent.id > 0
        if self.conversation_id is not None:
            cond &= LiveEvent.conversation_id == self.conversation_id
        if self.tenant_path is not None:
            cond &= LiveEvent.tenant.in_(Tenant.select(Tenant.id).where(Tenant.path.startswith(self.tenant_path)))
        elif self.tenant_id is not None:
            cond &= LiveEvent.tenant == self.tenant_id
        if self.visitor:
            cond &= (LiveEvent.kind == "message") & (LiveEvent.direction == "out")
        return cond


def events_after(scope: Scope, last_id: int) -> list[LiveEvent]:
    return list(LiveEvent.select().where(scope.where(), LiveEvent.id > last_id).order_by(LiveEvent.id).limit(BATCH))


def _frame(event: LiveEvent) -> str:
    data = {"conversation_id": event.conversation_id, "kind": event.kind}
    if event.message_id is not None:
        data["message_id"] = event.message_id
    if event.direction:
        data["direction"] = event.direction
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(data)}\n\n"


def stream(scope: Scope, last_id: int | None, *, lifetime: float, poll: float, on_tick=None,
           tick_every: float = 15.0, retry_ms: int = 1000, sleep=time.sleep,
           monotonic=time.monotonic) -> Iterator[str]:
    """Server-Sent Events for ``scope`` from ``last_id`` on, for ``lifetime`` seconds.

    ``lifetime=0`` answers what is new and ends at once: with a long ``retry`` that makes
    the browser poll through the same URL, holding no thread between polls.

    The stream ends by itself so that no request holds a worker thread for long; the
    browser reconnects (``retry``) and its Last-Event-ID resumes where this one ended,
    so nothing is lost across the reconnect. A comment line every ``tick_every``
    seconds keeps proxies from timing the connection out and lets ``on_tick`` (presence)
    run while the page is open.
    """
    cursor = newest_id() if last_id is None else last_id
    # The first frame names the cursor, so a client that had none resumes from here.
    yield f"retry: {retry_ms}\nid: {cursor}\n: stream open\n\n"
    started = last_tick = monotonic()
    while True:
        for event in events_after(scope, cursor):
            cursor = event.id
            yield _frame(event)
        now = monotonic()
        if now - started >= lifetime:
            yield ": reconnect\n\n"
            return
        if now - last_tick >= tick_every:
            last_tick = now
            if on_tick is not None:
                on_tick()
            yield ": ping\n\n"
        sleep(poll)


def prune(retention_seconds: float) -> int:
    """Drop events older than any reconnecting client could still ask for."""
    cutoff = utcnow() - dt.timedelta(seconds=retention_seconds)
    return LiveEvent.delete().where(LiveEvent.created_at < cutoff).execute()


def prune_job(app) -> None:
    """Worker job: drop change-feed rows older than live_event_retention_seconds (idempotent)."""
    prune(float(app.extensions["appliance_instance"]["live_event_retention_seconds"]))


# --- presence ------------------------------------------------------------------------

PRESENCE_STATES = ("online", "away", "offline")


def setting(name: str):
    """A live/presence setting of the running app's instance (the defaults outside an app)."""
    if has_app_context() and "appliance_instance" in current_app.extensions:
        return current_app.extensions["appliance_instance"][name]
    return DEFAULTS[name]


def thresholds() -> dict:
    return {"away_after": float(setting("presence_away_seconds")),
            "offline_after": float(setting("presence_offline_seconds"))}


def seen(user_id: int, *, active: bool = False) -> None:
    """The user's page holds a stream open (``active``: and had input lately)."""
    now = utcnow()
    update = {Presence.last_seen_at: now}
    if active:
        update[Presence.last_active_at] = now
    (Presence.insert(user=user_id, last_seen_at=now, last_active_at=now)
     .on_conflict(conflict_target=[Presence.user], update=update).execute())


def state_of(row: Presence | None, *, away_after: float, offline_after: float) -> str:
    if row is None:
        return "offline"
    now = utcnow()
    if now - row.last_seen_at > dt.timedelta(seconds=offline_after):
        return "offline"
    if now - row.last_active_at > dt.timedelta(seconds=away_after):
        return "away"
    return "online"


def since(now) -> tuple:
    """(seen since, active since): the instants that tell online from away from offline at ``now``."""
    limits = thresholds()
    return (now - dt.timedelta(seconds=limits["offline_after"]), now - dt.timedelta(seconds=limits["away_after"]))


def presence_of(user_ids, *, away_after: float, offline_after: float) -> dict[int, str]:
    rows = {p.user_id: p for p in Presence.select().where(Presence.user.in_(list(user_ids)))}
    return {uid: state_of(rows.get(uid), away_after=away_after, offline_after=offline_after) for uid in user_ids}


def presence_rank(user_field, seen_since, active_since):
    """An ORDER BY term: 0 for online users, 1 for away, 2 for offline (round-robin prefers low);
    online: seen since ``seen_since`` and active since ``active_since`` (see :func:`since`)."""
    online = Presence.select(Presence.user).where(Presence.last_seen_at >= seen_since,
                                                  Presence.last_active_at >= active_since)
    away = Presence.select(Presence.user).where(Presence.last_seen_at >= seen_since)
    return Case(None, [(user_field.in_(online), 0), (user_field.in_(away), 1)], 2)
