"""Conversations: inbound messages, replies, assignment, statuses and the inbox query."""

from __future__ import annotations

import datetime as dt

from peewee import SQL, fn

from appliance.web.db import write_transaction
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import (
    PREVIEW_CHARS,
    PRIORITIES,
    STATUSES,
    Channel,
    Contact,
    Conversation,
    ConversationLabel,
    ConversationRead,
    Message,
)
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, live, reports, routing
from appliance.web.services.routing import pick_agent

MAX_BODY = 20_000
PAGE_SIZE = 25
# Up to this many conversations with a label, the label filter reads them all (see inbox()).
LABEL_LIST_CAP = 2000


def _clean_body(body) -> str:
    if not isinstance(body, str) or not body.strip():
        raise ServiceError("A message needs a non-empty body.", 422)
    if len(body) > MAX_BODY:
        raise ServiceError(f"A message body is limited to {MAX_BODY} characters.", 422)
    return body


def preview_of(body: str) -> str:
    """The inbox row's one line: whitespace folded, cut at PREVIEW_CHARS with an ellipsis."""
    line = " ".join(str(body).split())
    return line if len(line) <= PREVIEW_CHARS else line[:PREVIEW_CHARS - 1].rstrip() + "\u2026"


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
                               message_count=1, created_at=now, last_message_at=now, preview=preview_of(body),
                               last_direction=direction, last_inbound_at=now if direction == "in" else None)
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
    # The preview, the unread mark and a snoozed conversation's wake-up ride on the
    # counter's UPDATE: an inbound message costs no statement more for them.
    changes = {Conversation.message_count: Conversation.message_count + 1, Conversation.last_message_at: now,
               Conversation.last_direction: direction}
    if conv.uid is not None:
        preview = preview_of(body)
        changes[Conversation.preview] = Conversation.encrypt_value(conv.tenant_id, "preview", conv.uid, preview)
    if direction == "in":
        changes[Conversation.last_inbound_at] = now
        if conv.snoozed_until is not None and conv.status == "pending":
            changes[Conversation.status] = "open"
            changes[Conversation.snoozed_until] = None
    Conversation.update(changes).where(Conversation.id == conv.id).execute()
    conv.message_count += 1
    conv.last_message_at = now
    conv.last_direction = direction
    if Conversation.preview in changes:
        conv.preview = changes[Conversation.preview]
    if direction == "in":
        conv.last_inbound_at = now
        if Conversation.snoozed_until in changes:
            conv.status, conv.snoozed_until = "open", None
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
        fields = [Conversation.status]
        if conv.snoozed_until is not None:  # a status set by hand ends the snooze
            conv.snoozed_until = None
            fields.append(Conversation.snoozed_until)
        conv.save(only=fields)
        if changed:  # resolving twice keeps the first resolution's time
            reports.note_status(conv)
        live.publish(conv.tenant_id, conv.id, "status")
    return conv


def snooze(conv: Conversation, until: dt.datetime) -> Conversation:
    """Pending until ``until`` (naive UTC): the worker reopens it then, an inbound message sooner."""
    if not isinstance(until, dt.datetime):
        raise ServiceError("until: a date and time to snooze the conversation until.", 422)
    if until.tzinfo is not None:
        until = until.astimezone(dt.UTC).replace(tzinfo=None)
    now = utcnow()
    if until <= now:
        raise ServiceError("until must be in the future.", 422)
    if until > now + dt.timedelta(days=366):
        raise ServiceError("until: snooze for a year at most.", 422)
    with write_transaction():
        was_resolved = conv.status == "resolved"
        conv.status, conv.snoozed_until = "pending", until.replace(microsecond=0)
        conv.save(only=[Conversation.status, Conversation.snoozed_until])
        if was_resolved:
            reports.note_status(conv)
        live.publish(conv.tenant_id, conv.id, "status")
    return conv


def wake_snoozed(now: dt.datetime | None = None, batch: int = 500) -> list[int]:
    """Reopen the snoozed conversations whose time has come; the ids this call reopened.

    One conditional UPDATE ... RETURNING: a second worker on another host waits for the
    rows (PostgreSQL) or the write lock (SQLite), then finds them no longer pending and
    reopens nothing twice.
    """
    now = now or utcnow()
    due = (Conversation.select(Conversation.id)
           .where(Conversation.snoozed_until <= now, Conversation.status == "pending")
           .order_by(Conversation.snoozed_until).limit(batch))
    with write_transaction():
        rows = list(Conversation.update(status="open", snoozed_until=None)
                    .where(Conversation.id.in_(due), Conversation.status == "pending",
                           Conversation.snoozed_until <= now)
                    .returning(Conversation.id, Conversation.tenant).execute())
        if rows:
            live.publish_all([{"tenant_id": r.tenant_id, "conversation_id": r.id, "kind": "status"} for r in rows])
    return sorted(r.id for r in rows)


def snooze_job(app) -> None:
    while len(wake_snoozed()) == 500:  # a backlog (the worker was down): drain it in batches
        pass


def set_priority(conv: Conversation, priority: str) -> Conversation:
    if priority not in PRIORITIES:
        raise ServiceError(f"priority must be one of: {', '.join(PRIORITIES)}.", 422)
    with write_transaction():
        conv.priority = PRIORITIES.index(priority)
        conv.save(only=[Conversation.priority])
        live.publish(conv.tenant_id, conv.id, "status")
    return conv


def priority_name(value: int | None) -> str:
    return PRIORITIES[value] if value is not None and 0 <= value < len(PRIORITIES) else "normal"


# --- read markers ---------------------------------------------------------------------

def mark_read(user_id: int, conv: Conversation) -> None:
    """The user has seen everything in ``conv`` up to now (an upsert of their marker)."""
    now = utcnow()
    (ConversationRead.insert(user=user_id, conversation=conv.id, read_at=now)
     .on_conflict(conflict_target=[ConversationRead.user, ConversationRead.conversation],
                  update={ConversationRead.read_at: now}).execute())


def mark_unread(user_id: int, conv: Conversation) -> None:
    ConversationRead.delete().where(ConversationRead.user == user_id,
                                    ConversationRead.conversation == conv.id).execute()


def is_unread(user_id: int, conv: Conversation) -> bool:
    return conv.id in unread_among(user_id, [conv])


def unread_among(user_id: int | None, rows) -> set[int]:
    """Ids of ``rows`` with an inbound message newer than the user's marker (one query a page)."""
    rows = [r for r in rows if r.last_inbound_at is not None]
    if not rows or user_id is None:
        return set()
    read = dict(ConversationRead.select(ConversationRead.conversation, ConversationRead.read_at)
                .where(ConversationRead.user == user_id, ConversationRead.conversation.in_([r.id for r in rows]))
                .tuples())
    return {r.id for r in rows if r.id not in read or read[r.id] < r.last_inbound_at}


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


def make_cursor(conv: Conversation, sort: str = "newest") -> str:
    base = f"{conv.last_message_at.isoformat()}_{conv.id}"
    return f"p{conv.priority}~{base}" if sort == "priority" else base


SORTS = ("newest", "priority")


def inbox(tenant: Tenant, *, status=None, assignee=None, channel_id=None, team_id=None,
          include_subaccounts=False, cursor=None, limit=PAGE_SIZE, viewer_id=None,
          label_id=None, priority=None, contact_ids=None, sort="newest"):
    """Newest first (or most urgent first, then newest), keyset-paginated on
    ([priority,] last_message_at, id): one index range scan per page however many
    messages there are. ``contact_ids``: a search's matches (see contacts.search)."""
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
    if label_id:
        tagged = ConversationLabel.select(ConversationLabel.conversation).where(ConversationLabel.label == label_id)
        if tagged.limit(LABEL_LIST_CAP + 1).count() <= LABEL_LIST_CAP:
            # Few labelled: read them all and sort (cheaper than walking a tab for rare matches).
            query = query.where(Conversation.id.in_(tagged))
        else:
            # Many: walk the tab's index newest first and probe each row's label; SQLite would
            # otherwise read and sort every labelled conversation (cost growing with the label).
            query = query.where(fn.EXISTS(ConversationLabel.select(SQL("1")).where(
                ConversationLabel.conversation == Conversation.id, ConversationLabel.label == label_id)))
    if priority not in (None, ""):
        if priority not in PRIORITIES:
            raise ServiceError(f"priority must be one of: {', '.join(PRIORITIES)}.", 422)
        query = query.where(Conversation.priority == PRIORITIES.index(priority))
    if contact_ids is not None:
        query = query.where(Conversation.contact.in_(list(contact_ids) or [-1]))
    if sort not in SORTS:
        raise ServiceError(f"sort must be one of: {', '.join(SORTS)}.", 422)
    by_priority = sort == "priority"
    level = None
    if by_priority and cursor:
        head, sep, cursor = cursor.partition("~")
        if not sep or not head.startswith("p") or not head[1:].isdigit():
            raise ServiceError("cursor is not one this server gave out.", 400)
        level = int(head[1:])
    position = parse_cursor(cursor)
    if position:
        stamp, ident = position
        later = ((Conversation.last_message_at < stamp)
                 | ((Conversation.last_message_at == stamp) & (Conversation.id < ident)))
        if level is not None:
            later = (Conversation.priority < level) | ((Conversation.priority == level) & later)
        query = query.where(later)
    limit = max(1, min(int(limit), 100))
    order = [Conversation.last_message_at.desc(), Conversation.id.desc()]
    if by_priority:
        order.insert(0, Conversation.priority.desc())
    rows = list(query.order_by(*order).limit(limit + 1))
    next_cursor = make_cursor(rows[limit - 1], sort) if len(rows) > limit else None
    return rows[:limit], next_cursor


def next_in_inbox(conv: Conversation) -> Conversation | None:
    """The conversation after ``conv`` in its tenant's open inbox, newest first (the "next" shortcut);
    past the last one, the newest open conversation."""
    query = Conversation.select().where(Conversation.tenant == conv.tenant_id, Conversation.status == "open",
                                        Conversation.id != conv.id)
    order = (Conversation.last_message_at.desc(), Conversation.id.desc())
    older = query.where((Conversation.last_message_at < conv.last_message_at)
                        | ((Conversation.last_message_at == conv.last_message_at) & (Conversation.id < conv.id)))
    return older.order_by(*order).first() or query.order_by(*order).first()


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
