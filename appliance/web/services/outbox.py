"""Replies on their way out: the channel outbox, drained by the worker.

An agent's reply on a channel that delivers becomes an outbox row in the same
transaction as the message, so a reply is never stored without being queued or queued
twice. The worker sends each row exactly once across app hosts:

* PostgreSQL: a row is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` and kept
  locked while the request is in flight; another host skips it without waiting; a host
  that dies mid-request drops its connection, the lock goes, and the row is due again.
* SQLite (one host): the claim is a ``BEGIN IMMEDIATE`` transaction that marks the row
  ``sending`` with a lease and commits before the request, so the web app is never
  blocked behind a slow service; an expired lease makes the row due again.

A conversation's replies leave in the order they were written, whichever host sends: a
row is claimed only when no earlier row of its conversation is pending or sending (on
PostgreSQL an in-flight row stays ``pending`` and locked, so the rule holds across hosts
without another lock). A reply that backs off holds back only its own conversation; a
failed one holds back nothing.

A retry reuses the row's idempotency key (VK's ``random_id``, the webhook's
``Idempotency-Key``), so a service that de-duplicates drops a repeat after a lost answer.
Temporary failures (timeouts, 5xx, 429) back off, honouring ``retry_after``; a bounded
number of tries, then the row is ``failed`` with the reason, shown on the message with
a "retry" action. Each channel is held to a number of sends per minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from peewee import fn

from appliance.web.channels import adapter_for
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import (
    DELIVERY_STATUSES,
    DeliveryStatus,
    Outbound,
    PermanentFailure,
    TemporaryFailure,
)
from appliance.web.db import database_proxy, is_postgres, write_transaction
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.channels import FAILED, PENDING, SENDING, SENT, ChannelReceipt, OutboxMessage
from appliance.web.models.contact_center import Channel, Conversation, Message
from appliance.web.services import ServiceError, live

log = logging.getLogger("appliance.web.outbox")

LEASE = dt.timedelta(minutes=5)
RECEIPT_HOLD = dt.timedelta(days=1)


def enqueue(conv: Conversation, message: Message) -> OutboxMessage | None:
    """Queue ``message`` (an agent's reply) when its channel delivers replies somewhere."""
    channel = Channel.get_by_id(conv.channel_id)
    adapter = adapter_for(channel.kind)
    if not adapter.sends or not adapter.delivers(channel_config.settings_for(channel)):
        return None
    return OutboxMessage.create(message=message.id, channel=channel.id, tenant=conv.tenant_id,
                                conversation_id=conv.id, idempotency_key=uuid.uuid4().hex,
                                next_attempt_at=utcnow())


def _limits() -> dict:
    return channel_config.installation_settings()


def backoff(attempts: int, limits: dict) -> float:
    """Seconds before try ``attempts + 1``: doubling from the base, capped."""
    return min(float(limits["outbox_backoff_max"]), float(limits["outbox_backoff_base"]) * 2 ** max(0, attempts - 1))


def _due(now):
    return (((OutboxMessage.state == PENDING) & (OutboxMessage.next_attempt_at <= now))
            | ((OutboxMessage.state == SENDING) & (OutboxMessage.lease_until < now)))


def drain(limit: int | None = None) -> dict:
    """Send what is due, at most ``limit`` rows; returns counts by outcome."""
    limits = _limits()
    limit = int(limits["outbox_batch"]) if limit is None else limit
    counts = {"sent": 0, "retry": 0, "failed": 0, "deferred": 0}
    skipped: set[int] = set()  # rows deferred this round (rate limit), so the loop moves on
    for _ in range(limit):
        outcome = _send_one(limits, skipped)
        if outcome is None:
            break
        counts[outcome] += 1
    return counts


def _claim_query(now, skipped):
    earlier = OutboxMessage.alias("earlier")
    # A conversation's replies leave in the order they were written: one waits while an
    # earlier one is still pending (backing off, rate limited) or in flight on any host.
    # A failed one does not hold the rest back; its "retry" sends it after them.
    waiting = (earlier.select(earlier.id)
               .where(earlier.conversation_id == OutboxMessage.conversation_id,
                      earlier.state.in_([PENDING, SENDING]), earlier.id < OutboxMessage.id))
    query = (OutboxMessage.select().where(_due(now), ~fn.EXISTS(waiting))
             .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id))
    if skipped:
        query = query.where(OutboxMessage.id.not_in(list(skipped)))
    return query


def _send_one(limits, skipped) -> str | None:
    now = utcnow()
    if is_postgres():
        with database_proxy.atomic():
            row = _claim_query(now, skipped).for_update(skip_locked=True).first()
            if row is None:
                return None
            channel = Channel.get_by_id(row.channel_id)
            settings = channel_config.settings_for(channel)
            if _rate_limited(row, settings, now, limits):
                skipped.add(row.id)
                return "deferred"
            return _deliver(row, channel, settings, now, limits)
    with database_proxy.atomic("IMMEDIATE"):
        row = _claim_query(now, skipped).first()
        if row is None:
            return None
        channel = Channel.get_by_id(row.channel_id)
        settings = channel_config.settings_for(channel)
        if _rate_limited(row, settings, now, limits):
            skipped.add(row.id)
            return "deferred"
        OutboxMessage.update(state=SENDING, lease_until=now + LEASE).where(OutboxMessage.id == row.id).execute()
    # The request runs outside any transaction: the web app is never blocked behind a slow service.
    return _deliver(row, channel, settings, now, limits)


def _rate_limited(row: OutboxMessage, settings: dict, now, limits) -> bool:
    """Over the channel's sends per minute: move the row to when the oldest send of the window ages out."""
    per_minute = settings.get("rate_per_minute") or limits["rate_per_minute"]
    try:
        per_minute = max(1, int(per_minute))
    except (TypeError, ValueError):
        per_minute = int(limits["rate_per_minute"])
    window = now - dt.timedelta(minutes=1)
    recent = (OutboxMessage.select(OutboxMessage.sent_at)
              .where(OutboxMessage.channel == row.channel_id, OutboxMessage.state == SENT,
                     OutboxMessage.sent_at > window)
              .order_by(OutboxMessage.sent_at.desc()).limit(per_minute))
    stamps = [r.sent_at for r in recent]
    if len(stamps) < per_minute:
        return False
    OutboxMessage.update(state=PENDING, lease_until=None,
                         next_attempt_at=min(stamps) + dt.timedelta(minutes=1)).where(
        OutboxMessage.id == row.id).execute()
    return True


def outbound_for(row: OutboxMessage) -> Outbound:
    from appliance.web.channels.ingest import recipient_for

    message = Message.get_by_id(row.message_id)
    conv = Conversation.get_by_id(message.conversation_id)
    return Outbound(message_uid=str(message.uid), conversation_uid=str(conv.uid), recipient_id=recipient_for(conv),
                    text=message.body, subject=conv.subject, idempotency_key=row.idempotency_key,
                    files=_files_of(message))


def _files_of(message: Message) -> list:
    from appliance.web.channels.base import InboundFile

    return [InboundFile(a.filename, a.content_type, a.data) for a in message.attachments]


def _deliver(row: OutboxMessage, channel: Channel, settings: dict, now, limits) -> str:
    adapter = adapter_for(channel.kind)
    attempts = row.attempts + 1
    try:
        sent = adapter.send(settings, outbound_for(row))
    except TemporaryFailure as exc:
        return _retry_or_fail(row, channel, attempts, exc.reason, exc.retry_after, now, limits)
    except PermanentFailure as exc:
        return _fail(row, channel, attempts, exc.reason)
    except Exception as exc:  # a bug or an odd answer must not wedge the queue: retried, then failed
        log.exception("sending outbox row %s failed", row.id)
        return _retry_or_fail(row, channel, attempts, f"Internal error ({type(exc).__name__}).", None, now, limits)
    external_id = (sent.external_id or None) and str(sent.external_id)[:255]
    OutboxMessage.update(state=SENT, attempts=attempts, sent_at=utcnow(), lease_until=None, last_error=None,
                         external_id=external_id).where(OutboxMessage.id == row.id).execute()
    channel_config.record_error(channel, None)
    if external_id:
        _apply_held_receipts(channel, external_id)
    return "sent"


def _retry_or_fail(row, channel, attempts, reason, retry_after, now, limits) -> str:
    if attempts >= int(limits["outbox_max_attempts"]):
        return _fail(row, channel, attempts, f"Gave up after {attempts} tries: {reason}")
    delay = backoff(attempts, limits)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    OutboxMessage.update(state=PENDING, attempts=attempts, lease_until=None, last_error=reason[:500],
                         next_attempt_at=now + dt.timedelta(seconds=delay)).where(OutboxMessage.id == row.id).execute()
    channel_config.record_error(channel, reason)
    return "retry"


def _fail(row, channel, attempts, reason) -> str:
    OutboxMessage.update(state=FAILED, attempts=attempts, lease_until=None, last_error=reason[:500]).where(
        OutboxMessage.id == row.id).execute()
    channel_config.record_error(channel, reason)
    return "failed"


def retry(message: Message, actor_id=None) -> OutboxMessage:
    """Send a failed reply again (a fresh set of tries, the same idempotency key)."""
    row = OutboxMessage.get_or_none(OutboxMessage.message == message.id)
    if row is None:
        raise ServiceError("This message is not on its way to a channel, so there is nothing to retry.", 409)
    if row.state != FAILED:
        raise ServiceError(f"Only a failed delivery can be retried; this one is {row.state}.", 409)
    OutboxMessage.update(state=PENDING, attempts=0, next_attempt_at=utcnow(), last_error=None,
                         delivery_status=None, delivery_at=None).where(
        OutboxMessage.id == row.id, OutboxMessage.state == FAILED).execute()
    record("message.retry_delivery", actor_id=actor_id, tenant_id=message.tenant_id, target=f"message:{message.id}")
    return OutboxMessage.get_by_id(row.id)


def deliveries(message_ids) -> dict:
    """message id -> {state, attempts, reason, receipt, receipt_at} for the conversation view.

    ``receipt`` is the service's latest word after the send (delivered, read, failed), or
    None where it gave none yet, or never does (Telegram, the generic webhook, e-mail).
    """
    ids = list(message_ids)
    if not ids:
        return {}
    return {r.message_id: {"state": r.state, "attempts": r.attempts, "reason": r.last_error,
                           "receipt": r.delivery_status, "receipt_at": r.delivery_at}
            for r in OutboxMessage.select().where(OutboxMessage.message.in_(ids))}


# A later receipt never takes back an earlier one: services send them out of order
# (WhatsApp's "delivered" can follow its "read"). A failure reported after a read is kept out.
_RANK = {None: 0, "delivered": 1, "read": 2, "failed": 2}


def record_statuses(channel: Channel, receipts: list[DeliveryStatus]) -> int:
    """Store the service's receipts on the replies they name; returns how many rows changed.

    A receipt for an id no sent reply has yet is held (``channel_receipt``) and applied
    when a send returns that id; one for an id this channel never sent (another app on the
    same account) is dropped after a day. A "failed" receipt fails the row with the
    service's reason, so the conversation view offers "retry" as for a failed send.
    """
    changed = 0
    for receipt in receipts:
        if receipt.status not in DELIVERY_STATUSES:
            continue
        with write_transaction():
            rows = _receipt_rows(channel, receipt)
            if not rows and not receipt.up_to:
                # Perhaps faster than the send's own answer: held until that row knows its id.
                ChannelReceipt.create(channel=channel.id, external_id=str(receipt.external_id)[:255],
                                      status=receipt.status, reason=(receipt.reason or None) and receipt.reason[:500])
            for row in rows:
                if _RANK[receipt.status] <= _RANK.get(row.delivery_status, 0):
                    continue
                values = {"delivery_status": receipt.status, "delivery_at": utcnow()}
                if receipt.status == "failed":
                    values.update(state=FAILED, last_error=("The service reported it undelivered: " + (
                        receipt.reason or "no reason given."))[:500])
                OutboxMessage.update(**values).where(OutboxMessage.id == row.id).execute()
                message = Message.get_by_id(row.message_id)
                live.publish(message.tenant_id, message.conversation_id, "delivery", message_id=message.id)
                changed += 1
    return changed


def _apply_held_receipts(channel: Channel, external_id: str) -> None:
    held = list(ChannelReceipt.select().where(ChannelReceipt.channel == channel.id,
                                              ChannelReceipt.external_id == external_id).order_by(ChannelReceipt.id))
    if not held:
        return
    ChannelReceipt.delete().where(ChannelReceipt.id.in_([h.id for h in held])).execute()
    record_statuses(channel, [DeliveryStatus(external_id=h.external_id, status=h.status, reason=h.reason)
                              for h in held])


def prune_receipts(now=None) -> int:
    """Held receipts nobody claimed within a day (ids another app sent under the same account)."""
    cutoff = (now or utcnow()) - RECEIPT_HOLD
    return ChannelReceipt.delete().where(ChannelReceipt.created_at < cutoff).execute()


def _receipt_rows(channel: Channel, receipt: DeliveryStatus) -> list[OutboxMessage]:
    sent = OutboxMessage.select().where(OutboxMessage.channel == channel.id, OutboxMessage.state == SENT)
    if not receipt.up_to:
        return list(sent.where(OutboxMessage.external_id == str(receipt.external_id)[:255]))
    from appliance.web.channels.ingest import find_identity

    identity = find_identity(channel, receipt.recipient_id) if receipt.recipient_id else None
    if identity is None or not str(receipt.external_id).isdigit():
        return []
    # Replies to this peer not read yet, up to the id the service read: a few rows at most.
    rows = (sent.join(Message).join(Conversation)
            .where(Conversation.contact == identity.contact_id,
                   (OutboxMessage.delivery_status.is_null()) | (OutboxMessage.delivery_status != "read")))
    last = int(receipt.external_id)
    return [r for r in rows if (r.external_id or "").isdigit() and int(r.external_id) <= last]


def outbox_job(app) -> None:
    """Worker job: deliver the replies that are due; drop held receipts nobody claimed."""
    drain()
    prune_receipts()
