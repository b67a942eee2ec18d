"""Conversations: inbound messages, replies, assignment, statuses and the inbox query."""

from __future__ import annotations

import datetime as dt

from appliance.web.db import write_transaction
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import (
    STATUSES,
    Channel,
    Contact,
    Conversation,
    Message,
)
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, live, reports, routing
from appliance.web.services.routing import pick_agent

MAX_BODY = 20_000
PAGE_SIZE = 25


def _clean_body(body) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ServiceError("A message needs a non-empty body.", 422)
    if len(body) > MAX_BODY:
        raise ServiceError(f"A message body is limited to {MAX_BODY} characters.", 422)
    return body


def find_or_create_contact(tenant: Tenant, *, name=None, email=None, phone=None) -> Contact:
    from appliance.web.services.contacts import create_contact, find_contacts

    for kind, value in (("email", email), ("phone", phone)):
        if value:
            # Never onto a visitor's unverified claim: it may name someone else's address.
            found = find_contacts(tenant, **{kind: value}).where(Contact.verified == True).first()
            if found is not None:
                return found
    contact = create_contact(tenant, name=name, email=email, phone=phone)
    contact._created = True  # the caller may know it has no conversation yet
    return contact


def start_conversation(channel: Channel, tenant: Tenant, contact: Contact | int, body: str, *,
                       direction="in", author=None, subject=None) -> Conversation:
    body = _clean_body(body)
    with write_transaction():
        conv, _ = open_conversation(channel, tenant, contact, body, direction=direction, author=author,
                                    subject=subject)
    return conv


def open_conversation(channel: Channel, tenant: Tenant, contact: Contact | int, body: str, *, direction="in",
                      author=None, subject=None) -> tuple[Conversation, Message]:
    """A new conversation with its first message, inside the caller's transaction: (conversation, message).

    Inbound, the round-robin agent is chosen first, so the conversation is inserted
    assigned and counted (one message) and its two live events go in one statement;
    when nobody can take it, it is inserted waiting for the queue job (services/routing.py).
    """
    now = utcnow()
    member = pick_agent(tenant, channel.team_id) if direction == "in" else None
    conv = Conversation.create(tenant=tenant, channel=channel, contact=contact, subject=(subject or "")[:200] or None,
                               team=channel.team_id, assignee=member.user_id if member else None,
                               waiting_since=now if direction == "in" and member is None else None,
                               message_count=1, created_at=now, last_message_at=now)
    msg = Message.create(conversation=conv, tenant=conv.tenant_id, direction=direction, body=body, author=author,
                         created_at=now)
    events = [{"tenant_id": conv.tenant_id, "conversation_id": conv.id, "kind": "message", "message_id": msg.id,
               "direction": direction}]
    if member is not None:
        events.append({"tenant_id": conv.tenant_id, "conversation_id": conv.id, "kind": "assignment"})
    live.publish_all(events)
    if direction == "out":
        from appliance.web.services.outbox import enqueue

        enqueue(conv, msg)
    return conv, msg


def ingest_inbound(channel: Channel, *, body, name=None, email=None, phone=None,
                   conversation: Conversation | None = None, tenant: Tenant | None = None):
    """A message from a contact: continue their open conversation or start a new one."""
    tenant = tenant or channel.tenant
    if conversation is not None:
        add_message(conversation, "in", body)
        if conversation.status == "resolved":
            set_status(conversation, "open")
        return conversation
    contact = find_or_create_contact(tenant, name=name, email=email, phone=phone)
    open_conv = (
        Conversation.select()
        .where(Conversation.contact == contact, Conversation.channel == channel,
               Conversation.status != "resolved")
        .order_by(Conversation.id.desc())
        .first()
    )
    if open_conv is not None:
        add_message(open_conv, "in", body)
        return open_conv
    return start_conversation(channel, tenant, contact, body)


def _add_message(conv: Conversation, direction: str, body: str, author) -> Message:
    now = utcnow()
    msg = Message.create(conversation=conv, tenant=conv.tenant_id, direction=direction,
                         body=body, author=author, created_at=now)
    Conversation.update(
        message_count=Conversation.message_count + 1, last_message_at=now
    ).where(Conversation.id == conv.id).execute()
    conv.message_count += 1
    conv.last_message_at = now
    live.publish(conv.tenant_id, conv.id, "message", message_id=msg.id, direction=direction)
    if direction == "out":
        # Queued in the same transaction as the reply: stored means on its way, once.
        from appliance.web.services.outbox import enqueue

        enqueue(conv, msg)
    return msg


def append_message(conv: Conversation, direction: str, body: str) -> Message:
    """A message from the contact, inside the caller's transaction (no savepoint of its own)."""
    return _add_message(conv, direction, body, None)


def add_message(conv: Conversation, direction: str, body, author=None) -> Message:
    if direction not in ("in", "out", "note"):
        raise ServiceError("direction must be in, out or note.", 422)
    body = _clean_body(body)
    with write_transaction():
        msg = _add_message(conv, direction, body, author)
        if direction == "out":
            reports.note_reply(conv, msg)
        if direction == "out" and conv.status == "open" and conv.assignee_id is None and author:
            conv.assignee, conv.waiting_since = author, None
            conv.save(only=[Conversation.assignee, Conversation.waiting_since])
            live.publish(conv.tenant_id, conv.id, "assignment")
    return msg


def set_status(conv: Conversation, status: str) -> Conversation:
    if status not in STATUSES:
        raise ServiceError(f"status must be one of: {', '.join(STATUSES)}.", 422)
    with write_transaction():
        changed = conv.status != status
        conv.status = status
        conv.save(only=[Conversation.status])
        if changed:  # resolving twice keeps the first resolution's time
            reports.note_status(conv)
        live.publish(conv.tenant_id, conv.id, "status")
    return conv


def assign(conv: Conversation, user_id: int | None, team_id: int | None = None, *, set_team=False,
           route=False, actor_id: int | None = None, via: str = "service") -> Conversation:
    """The one way a conversation's assignee or team changes by request: checked, written,
    published live and audited, whoever asks (the inbox, the API, the supervisor's view, the
    queue job; ``via`` says which, ``actor_id`` who).

    ``user_id``: someone eligible in the conversation's tenant (services/routing.py), or None
    to put it back in the queue (it waits while open, and the queue job hands it on).
    ``set_team``: also move it to ``team_id`` (a team of its tenant, or None). ``route``:
    ignore ``user_id`` and let round-robin choose among the (new) team's members now; when
    nobody can take it, it waits for them.
    """
    tenant = Tenant.get_by_id(conv.tenant_id)
    if set_team and team_id is not None and team_id != conv.team_id:  # a parent's team from a shared channel stays
        routing.team_of(tenant, team_id)
    if user_id is not None and not route and not routing.can_take(user_id, tenant):
        raise ServiceError("assignee_id: that user cannot take conversations of this organisation (a member "
                           "of it or of an organisation above it, active, can).", 422)
    previous = {"assignee": conv.assignee_id, "team": conv.team_id}
    with write_transaction():
        if set_team:
            conv.team = team_id
        if route:
            member = pick_agent(tenant, conv.team_id)
            user_id = member.user_id if member else None
        conv.assignee = user_id
        conv.waiting_since = None if user_id is not None or conv.status != "open" else conv.waiting_since or utcnow()
        fields = [Conversation.assignee, Conversation.waiting_since] + ([Conversation.team] if set_team else [])
        conv.save(only=fields)
        live.publish(conv.tenant_id, conv.id, "assignment")
        record("conversation.assign", actor_id=actor_id, tenant_id=conv.tenant_id, target=f"conversation:{conv.id}",
               assignee=user_id, team=conv.team_id, previous=previous["assignee"], previous_team=previous["team"],
               via=via)
    return conv


def parse_cursor(cursor: str | None):
    if not cursor:
        return None
    try:
        stamp, _, ident = cursor.partition("_")
        return dt.datetime.fromisoformat(stamp), int(ident)
    except ValueError as exc:
        raise ServiceError("cursor is not one this server gave out.", 400) from exc


def make_cursor(conv: Conversation) -> str:
    return f"{conv.last_message_at.isoformat()}_{conv.id}"


def inbox(tenant: Tenant, *, status=None, assignee=None, channel_id=None, team_id=None,
          include_subaccounts=False, cursor=None, limit=PAGE_SIZE, viewer_id=None):
    """Newest first, keyset-paginated on (last_message_at, id): one index range scan
    per page however many messages there are."""
    if include_subaccounts:
        query = Conversation.select().join(Tenant).where(Tenant.path.startswith(tenant.path))
    else:
        query = Conversation.select().where(Conversation.tenant == tenant.id)
    if status:
        if status not in STATUSES:
            raise ServiceError(f"status must be one of: {', '.join(STATUSES)}.", 422)
        query = query.where(Conversation.status == status)
    if assignee == "me":
        query = query.where(Conversation.assignee == viewer_id)
    elif assignee == "unassigned":
        query = query.where(Conversation.assignee.is_null())
    elif assignee not in (None, ""):
        try:
            query = query.where(Conversation.assignee == int(assignee))
        except (TypeError, ValueError) as exc:
            raise ServiceError("assignee must be me, unassigned or a user id.", 422) from exc
    if channel_id:
        query = query.where(Conversation.channel == channel_id)
    if team_id:
        query = query.where(Conversation.team == team_id)
    position = parse_cursor(cursor)
    if position:
        stamp, ident = position
        query = query.where(
            (Conversation.last_message_at < stamp)
            | ((Conversation.last_message_at == stamp) & (Conversation.id < ident))
        )
    limit = max(1, min(int(limit), 100))
    rows = list(query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(limit + 1))
    next_cursor = make_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


COUNT_CAP = 999


def status_counts(tenant: Tenant, include_subaccounts: bool = False) -> dict:
    """Per-status counts for the inbox tabs, each capped at COUNT_CAP + 1.

    A capped count reads at most COUNT_CAP index entries, so the tabs cost the same
    with a thousand conversations as with millions (the tab then shows "999+").
    """
    counts = {}
    for status in STATUSES:
        if include_subaccounts:
            query = (Conversation.select(Conversation.id).join(Tenant)
                     .where(Tenant.path.startswith(tenant.path), Conversation.status == status))
        else:
            query = Conversation.select(Conversation.id).where(
                Conversation.tenant == tenant.id, Conversation.status == status)
        counts[status] = query.limit(COUNT_CAP + 1).count()
    return counts


def count_label(n: int) -> str:
    return f"{COUNT_CAP}+" if n > COUNT_CAP else str(n)
