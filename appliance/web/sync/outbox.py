"""The outbox in the web app's database, and how a batch is claimed exactly once.

Several app hosts run the worker; a batch must still go out once. The lock is
the database's, never an election of our own:

* PostgreSQL: the claim is one transaction that locks the ``sender_lock`` row
  of ``sync_state`` with ``SELECT ... FOR UPDATE SKIP LOCKED`` (a second host
  finds it locked and skips this round, without waiting) and the batch rows
  the same way, keeps the locks while the request is in flight, and records the outcome before committing. A host
  that dies mid-request drops its connection, PostgreSQL releases the locks,
  and the rows are simply due again.
* SQLite (one host by definition): the claim is a ``BEGIN IMMEDIATE``
  transaction, which takes the database write lock, marks the rows ``sending``
  with a lease and commits before the request, so the web app is never blocked
  behind a slow vendor. A worker killed mid-request leaves a lease that
  expires; the rows are then sent again under the same idempotency key.

In both cases the daily request budget is spent inside the claim, before the
request, so no crash or race can push the number of requests past the cap.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager

from appliance.core.sync.client import Claim, OutboxItem, Outcome, new_batch_key
from appliance.web.db import is_postgres
from appliance.web.models.sync import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SyncOutbox,
    SyncRequestDay,
    SyncState,
)

SENDER_LOCK = "sender_lock"


class DatabaseOutbox:
    def __init__(self, database, *, lease_seconds: int = 600):
        self.db = database
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.last_skip: str | None = None  # why the last claim yielded None (for status)

    # ------------------------------------------------------------------ claim

    @contextmanager
    def claim(self, now: dt.datetime, *, max_items: int, max_requests_per_day: int):
        if is_postgres():
            with self.db.atomic():
                yield self._claim_locked(now, max_items, max_requests_per_day, lease=False)
            return
        with self.db.atomic("IMMEDIATE"):
            claim = self._claim_locked(now, max_items, max_requests_per_day, lease=True)
        if claim is None:
            yield None
            return
        try:
            yield claim
        except BaseException:
            # Not sent as far as we know: make the rows due again right away.
            with self.db.atomic("IMMEDIATE"):
                SyncOutbox.update(state=PENDING, lease_until=None).where(
                    SyncOutbox.id.in_([i.id for i in claim.items]) & (SyncOutbox.state == SENDING)
                ).execute()
            raise

    def _take_sender_lock(self) -> bool:
        """Lock the one sender row, or learn that another host holds it (never wait)."""
        if not SyncState.select().where(SyncState.key == SENDER_LOCK).exists():
            SyncState.insert(key=SENDER_LOCK, value="").on_conflict_ignore().execute()
        row = (
            SyncState.select(SyncState.key)
            .where(SyncState.key == SENDER_LOCK)
            .for_update(skip_locked=True)
            .first()
        )
        return row is not None

    def _due(self, now):
        return ((SyncOutbox.state == PENDING) & (SyncOutbox.next_attempt_at <= now)) | (
            (SyncOutbox.state == SENDING) & (SyncOutbox.lease_until < now)
        )

    def _claim_locked(self, now, max_items, max_requests_per_day, *, lease: bool) -> Claim | None:
        today = now.date()
        if is_postgres() and not self._take_sender_lock():
            self.last_skip = "another host is sending"
            return None
        if not SyncRequestDay.select().where(SyncRequestDay.day == today).exists():
            SyncRequestDay.insert(day=today, requests=0).on_conflict_ignore().execute()
        counter = SyncRequestDay.get(SyncRequestDay.day == today)
        if counter.requests >= max_requests_per_day:
            self.last_skip = f"daily limit of {max_requests_per_day} requests reached"
            return None

        due = SyncOutbox.select().where(self._due(now)).order_by(SyncOutbox.report_day)
        if is_postgres():
            due = due.for_update(skip_locked=True)
        rows = list(due.limit(max(max_items * 4, max_items)))
        if not rows:
            self.last_skip = "nothing due"
            return None
        first = rows[0]
        if first.idempotency_key:
            # A batch tried before goes out again as the same batch, same key.
            key = first.idempotency_key
            batch = [r for r in rows if r.idempotency_key == key]
        else:
            key = new_batch_key()
            batch = [r for r in rows if not r.idempotency_key][:max_items]
        ids = [r.id for r in batch]
        updates = {SyncOutbox.idempotency_key: key}
        if lease:
            updates.update({SyncOutbox.state: SENDING, SyncOutbox.lease_until: now + self.lease})
        SyncOutbox.update(updates).where(SyncOutbox.id.in_(ids)).execute()
        SyncRequestDay.update(requests=SyncRequestDay.requests + 1).where(
            SyncRequestDay.day == today
        ).execute()
        self.last_skip = None
        return Claim(
            key=key,
            items=[OutboxItem(r.id, r.report_id, json.loads(r.payload)) for r in batch],
            attempts=max(r.attempts for r in batch),
        )

    # ------------------------------------------------------------------ settle

    def settle(self, claim: Claim, outcome: Outcome, now: dt.datetime) -> None:
        ctx = self.db.atomic() if is_postgres() else self.db.atomic("IMMEDIATE")
        with ctx:
            if outcome.sent:
                SyncOutbox.update(
                    state=SENT,
                    sent_at=now,
                    lease_until=None,
                    last_error=None,
                    attempts=SyncOutbox.attempts + 1,
                ).where(SyncOutbox.id.in_(outcome.sent)).execute()
            for item_id, reason in outcome.failed.items():
                SyncOutbox.update(
                    state=FAILED,
                    lease_until=None,
                    last_error=reason[:500],
                    attempts=SyncOutbox.attempts + 1,
                ).where(SyncOutbox.id == item_id).execute()
            if outcome.retry:
                SyncOutbox.update(
                    state=PENDING,
                    lease_until=None,
                    next_attempt_at=outcome.next_attempt_at or now,
                    last_error=(outcome.error or "")[:500] or None,
                    attempts=SyncOutbox.attempts + 1,
                ).where(SyncOutbox.id.in_(outcome.retry)).execute()

    # ------------------------------------------------------------------ reading

    def requests_on(self, day: dt.date) -> int:
        row = SyncRequestDay.get_or_none(SyncRequestDay.day == day)
        return row.requests if row else 0
