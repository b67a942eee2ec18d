"""Channels, contacts, conversations, messages, teams, canned answers, knowledge base."""

from __future__ import annotations

import secrets
from uuid import uuid4

from peewee import (
    SQL,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
    UUIDField,
)

from appliance.web.crypto.fields import (  # personal data and content: ciphertext at rest
    BlindIndexField,
    EncryptedBytesField,
    EncryptedModel,
    EncryptedTextField,
)
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant, User

# The adapters for these live in appliance/web/channels (one registry there).
CHANNEL_KINDS = ("webchat", "webhook", "email", "telegram", "whatsapp", "vk", "viber")
STATUSES = ("open", "pending", "resolved")
DIRECTIONS = ("in", "out", "note")
# Stored as numbers so that "most urgent first" is an index order.
PRIORITIES = ("low", "normal", "high", "urgent")
PREVIEW_CHARS = 120


def _channel_key() -> str:
    return secrets.token_urlsafe(24)


class Team(BaseModel):
    tenant = ForeignKeyField(Tenant, backref="teams", on_delete="CASCADE")
    name = CharField(max_length=80)

    def to_json(self):
        return {"id": self.id, "tenant_id": self.tenant_id, "name": self.name}


class TeamMember(BaseModel):
    team = ForeignKeyField(Team, backref="members", on_delete="CASCADE")
    user = ForeignKeyField(User, on_delete="CASCADE")

    class Meta:
        indexes = ((("team", "user"), True),)


class Channel(EncryptedModel, BaseModel):
    tenant = ForeignKeyField(Tenant, backref="channels", on_delete="CASCADE")
    # Binds the sealed secrets to this row. Nullable only because a column added to a table
    # that has rows cannot be NOT NULL without a constant default: the migration that added
    # it filled every row, and the default fills every new one.
    uid = UUIDField(default=uuid4, unique=True, null=True)
    kind = CharField(max_length=20)
    name = CharField(max_length=80)
    # Public key in the widget/webhook URL; webhook calls also carry an HMAC signature.
    public_key = CharField(max_length=64, unique=True, default=_channel_key)
    # The signing secret (webhook deliveries both ways, web-chat identity tokens), sealed with
    # the tenant's key like message bodies; set on the first save.
    secret = EncryptedTextField(null=True)
    # After a rotation, the secret it replaced still verifies until previous_secret_until
    # (services/signing.py), so a sender can switch without losing deliveries.
    previous_secret = EncryptedTextField(null=True)
    previous_secret_until = DateTimeField(null=True)
    previous_secret_used_at = DateTimeField(null=True)  # last delivery signed with it (audited)
    team = ForeignKeyField(Team, null=True, on_delete="SET NULL")
    shared = BooleanField(default=False)
    is_active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)

    def save(self, *args, **kwargs):
        # Not a field default: peewee would put a default into the row unsealed.
        if self._pk is None and self.__data__.get("secret") is None:
            self.secret = _channel_key()
        return super().save(*args, **kwargs)

    def to_json(self):
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "kind": self.kind,
            "name": self.name,
            "public_key": self.public_key,
            "team_id": self.team_id,
            "shared": self.shared,
            "is_active": self.is_active,
        }


class Contact(EncryptedModel, BaseModel):
    tenant = ForeignKeyField(Tenant, backref="contacts", on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    name = EncryptedTextField(null=True)
    email = EncryptedTextField(null=True)
    phone = EncryptedTextField(null=True)
    notes = EncryptedTextField(null=True)
    # Exact-match search without decrypting: keyed HMACs of the normalised values.
    email_bidx = BlindIndexField("email", "email")
    phone_bidx = BlindIndexField("phone", "phone")
    # The whole name, case and spacing folded: names are ciphertext, so search finds a
    # full name typed as stored, never a part of one (README, "Inbox").
    name_bidx = BlindIndexField("name", "name")
    # False for an anonymous widget visitor: the name and e-mail are only what they typed.
    verified = BooleanField(default=True, constraints=[SQL("DEFAULT TRUE")])
    created_at = DateTimeField(default=utcnow)

    def to_json(self):
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "notes": self.notes,
            "verified": self.verified,
            "created_at": self.created_at.isoformat() + "Z",
        }


class Conversation(EncryptedModel, BaseModel):
    tenant = ForeignKeyField(Tenant, backref="conversations", on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    channel = ForeignKeyField(Channel, backref="conversations", on_delete="RESTRICT")
    contact = ForeignKeyField(Contact, backref="conversations", on_delete="RESTRICT")
    status = CharField(max_length=10, default="open")
    assignee = ForeignKeyField(User, null=True, backref="assigned", on_delete="SET NULL")
    team = ForeignKeyField(Team, null=True, on_delete="SET NULL")
    subject = EncryptedTextField(null=True)
    message_count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    last_message_at = DateTimeField(default=utcnow)
    # Set while nobody could take it (all at capacity, away from the team, unavailable):
    # the worker's queue job hands it to the first member who can (services/routing.py).
    waiting_since = DateTimeField(null=True)
    # The inbox row's one-line preview of the newest message, sealed like the bodies and
    # written by the same UPDATE that counts the message, so no page reads messages.
    preview = EncryptedTextField(null=True)
    last_direction = CharField(max_length=4, null=True)
    # Per-agent unread: a read marker older than this (or none) is unread.
    last_inbound_at = DateTimeField(null=True)
    priority = IntegerField(default=1, constraints=[SQL("DEFAULT 1")])
    # Pending until then; the worker reopens it (snooze_job), an inbound message sooner.
    snoozed_until = DateTimeField(null=True, index=True)

    class Meta:
        # The inbox reads "newest first within a tenant and status"; keyset pagination
        # on (last_message_at, id) stays fast with millions of rows.
        indexes = (
            (("tenant", "status", "last_message_at", "id"), False),
            (("tenant", "assignee", "last_message_at", "id"), False),
            (("tenant", "last_message_at", "id"), False),
            (("assignee", "status"), False),  # an agent's open load, for capacity
            (("waiting_since",), False),  # the waiting queue, oldest first
            (("tenant", "status", "priority", "last_message_at", "id"), False),
        )

    def to_json(self):
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "channel_id": self.channel_id,
            "contact_id": self.contact_id,
            "status": self.status,
            "assignee_id": self.assignee_id,
            "team_id": self.team_id,
            "subject": self.subject,
            "message_count": self.message_count,
            "waiting_since": self.waiting_since.isoformat() + "Z" if self.waiting_since else None,
            "created_at": self.created_at.isoformat() + "Z",
            "last_message_at": self.last_message_at.isoformat() + "Z",
            "priority": PRIORITIES[self.priority] if 0 <= (self.priority or 0) < len(PRIORITIES) else "normal",
            "snoozed_until": self.snoozed_until.isoformat() + "Z" if self.snoozed_until else None,
            "last_direction": self.last_direction,
        }


class Label(BaseModel):
    """A tag for conversations, per tenant; ``shared`` offers it to the sub-accounts below."""

    tenant = ForeignKeyField(Tenant, backref="labels", on_delete="CASCADE")
    name = CharField(max_length=40)
    color = CharField(max_length=7, default="#6e7781")
    shared = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("tenant", "name"), True),)

    def to_json(self):
        return {"id": self.id, "tenant_id": self.tenant_id, "name": self.name, "color": self.color,
                "shared": self.shared}


class ConversationLabel(BaseModel):
    conversation = ForeignKeyField(Conversation, backref="labels", on_delete="CASCADE")
    label = ForeignKeyField(Label, backref="conversations", on_delete="CASCADE")

    class Meta:
        # Filtering the inbox by label reads (label, conversation).
        indexes = ((("conversation", "label"), True), (("label", "conversation"), False))


class ConversationRead(BaseModel):
    """When a user last opened a conversation: unread while the newest inbound message is later."""

    user = ForeignKeyField(User, on_delete="CASCADE")
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE")
    read_at = DateTimeField()

    class Meta:
        indexes = ((("user", "conversation"), True),)


class Message(EncryptedModel, BaseModel):
    conversation = ForeignKeyField(Conversation, backref="messages", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    direction = CharField(max_length=4)
    author = ForeignKeyField(User, null=True, on_delete="SET NULL")
    body = EncryptedTextField()
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("conversation", "id"), False), (("tenant", "created_at"), False))

    def to_json(self):
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "direction": self.direction,
            "author_id": self.author_id,
            "body": self.body,
            "created_at": self.created_at.isoformat() + "Z",
        }


class Attachment(EncryptedModel, BaseModel):
    message = ForeignKeyField(Message, backref="attachments", on_delete="CASCADE")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE")
    uid = UUIDField(default=uuid4, unique=True)
    filename = EncryptedTextField()
    content_type = CharField(max_length=100, default="application/octet-stream")
    size = IntegerField(default=0)
    data = EncryptedBytesField()

    def to_json(self):
        return {
            "id": self.id,
            "message_id": self.message_id,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
        }


class CannedAnswer(BaseModel):
    tenant = ForeignKeyField(Tenant, backref="canned_answers", on_delete="CASCADE")
    shortcut = CharField(max_length=40)
    title = CharField(max_length=120)
    body = TextField()
    # Offered to the sub-accounts below too (read-only there), like shared articles.
    shared = BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")])

    class Meta:
        indexes = ((("tenant", "shortcut"), True),)

    def to_json(self):
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "shortcut": self.shortcut,
            "title": self.title,
            "body": self.body,
            "shared": self.shared,
        }


class Article(BaseModel):
    tenant = ForeignKeyField(Tenant, backref="articles", on_delete="CASCADE")
    title = CharField(max_length=200)
    body = TextField()
    shared = BooleanField(default=False)
    published = BooleanField(default=True)
    # Free text grouping the list ("Billing", "Returns"); empty: uncategorised.
    category = CharField(max_length=60, default="", constraints=[SQL("DEFAULT ''")])
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    def to_json(self):
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "title": self.title,
            "body": self.body,
            "category": self.category,
            "shared": self.shared,
            "published": self.published,
        }
