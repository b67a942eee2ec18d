"""The core schema as first released: tenant tree, users, contact-center objects, audit trail.

Frozen: these classes are the tables as this step created them, not the
application's models (see the package docstring). Encrypted values are stored
as BLOB/bytea, blind indexes as nullable indexed BLOB/bytea.
"""

from peewee import (
    AutoField,
    BlobField,
    BooleanField,
    CharField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    TextField,
    UUIDField,
)

from appliance.web.migrations import FrozenModel, create_frozen


class Tenant(FrozenModel):
    id = AutoField()
    parent = ForeignKeyField("self", null=True, on_delete="RESTRICT", backref="+")
    level = IntegerField()
    kind = CharField(max_length=20)
    name = CharField(max_length=120)
    slug = CharField(max_length=64, unique=True)
    path = CharField(max_length=255, index=True)
    brand_color = CharField(max_length=7)
    logo = TextField(null=True)
    credit_limit = DecimalField(max_digits=12, decimal_places=2)
    partner_level = CharField(max_length=20, null=True)
    is_active = BooleanField()
    created_at = DateTimeField()

    class Meta:
        table_name = "tenant"


class User(FrozenModel):
    id = AutoField()
    email = CharField(max_length=254, unique=True)
    name = CharField(max_length=120)
    password_hash = CharField(max_length=255)
    is_active = BooleanField()
    created_at = DateTimeField()
    last_login_at = DateTimeField(null=True)

    class Meta:
        table_name = "user"


class Membership(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    role = CharField(max_length=20)
    shared = BooleanField()
    available = BooleanField()
    last_assigned_at = DateTimeField(null=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "membership"
        indexes = ((("user", "tenant"), True),)


class ApiToken(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    name = CharField(max_length=80)
    role = CharField(max_length=20)
    prefix = CharField(max_length=12)
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField()
    last_used_at = DateTimeField(null=True)
    revoked = BooleanField()

    class Meta:
        table_name = "api_token"


class LoginAttempt(FrozenModel):
    id = AutoField()
    key = CharField(max_length=64, index=True)
    at = DateTimeField(index=True)

    class Meta:
        table_name = "login_attempt"


class Team(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    name = CharField(max_length=80)

    class Meta:
        table_name = "team"


class TeamMember(FrozenModel):
    id = AutoField()
    team = ForeignKeyField(Team, on_delete="CASCADE", backref="+")
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")

    class Meta:
        table_name = "team_member"
        indexes = ((("team", "user"), True),)


class Channel(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    kind = CharField(max_length=20)
    name = CharField(max_length=80)
    public_key = CharField(max_length=64, unique=True)
    secret = CharField(max_length=64)
    team = ForeignKeyField(Team, null=True, on_delete="SET NULL", backref="+")
    shared = BooleanField()
    is_active = BooleanField()
    created_at = DateTimeField()

    class Meta:
        table_name = "channel"


class Contact(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    name = BlobField(null=True)
    email = BlobField(null=True)
    phone = BlobField(null=True)
    notes = BlobField(null=True)
    email_bidx = BlobField(null=True, index=True)
    phone_bidx = BlobField(null=True, index=True)
    created_at = DateTimeField()

    class Meta:
        table_name = "contact"


class Conversation(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    channel = ForeignKeyField(Channel, on_delete="RESTRICT", backref="+")
    contact = ForeignKeyField(Contact, on_delete="RESTRICT", backref="+")
    status = CharField(max_length=10)
    assignee = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    team = ForeignKeyField(Team, null=True, on_delete="SET NULL", backref="+")
    subject = BlobField(null=True)
    message_count = IntegerField()
    created_at = DateTimeField()
    last_message_at = DateTimeField()

    class Meta:
        table_name = "conversation"
        indexes = (
            (("tenant", "status", "last_message_at", "id"), False),
            (("tenant", "assignee", "last_message_at", "id"), False),
            (("tenant", "last_message_at", "id"), False),
        )


class Message(FrozenModel):
    id = AutoField()
    conversation = ForeignKeyField(Conversation, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    direction = CharField(max_length=4)
    author = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    body = BlobField()
    created_at = DateTimeField()

    class Meta:
        table_name = "message"
        indexes = ((("conversation", "id"), False), (("tenant", "created_at"), False))


class Attachment(FrozenModel):
    id = AutoField()
    message = ForeignKeyField(Message, on_delete="CASCADE", backref="+")
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    uid = UUIDField(unique=True)
    filename = BlobField()
    content_type = CharField(max_length=100)
    size = IntegerField()
    data = BlobField()

    class Meta:
        table_name = "attachment"


class CannedAnswer(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    shortcut = CharField(max_length=40)
    title = CharField(max_length=120)
    body = TextField()

    class Meta:
        table_name = "canned_answer"
        indexes = ((("tenant", "shortcut"), True),)


class Article(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    title = CharField(max_length=200)
    body = TextField()
    shared = BooleanField()
    published = BooleanField()
    created_at = DateTimeField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "article"


class AuditEvent(FrozenModel):
    id = AutoField()
    at = DateTimeField()
    tenant = ForeignKeyField(Tenant, null=True, on_delete="SET NULL", backref="+")
    actor_id = IntegerField(null=True)
    action = CharField(max_length=64)
    target = CharField(max_length=64, null=True)
    details = TextField()
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)

    class Meta:
        table_name = "audit_event"


MODELS = [
    Tenant, User, Membership, ApiToken, LoginAttempt, Team, TeamMember, Channel,
    Contact, Conversation, Message, Attachment, CannedAnswer, Article, AuditEvent,
]


def up(db, migrator):
    create_frozen(db, MODELS)
