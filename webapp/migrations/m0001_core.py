"""The core schema: tenant tree, users, contact-center objects, audit trail."""

from webapp.models.audit import AuditEvent
from webapp.models.contact_center import (
    Article,
    Attachment,
    CannedAnswer,
    Channel,
    Contact,
    Conversation,
    Message,
    Team,
    TeamMember,
)
from webapp.models.tenancy import ApiToken, LoginAttempt, Membership, Tenant, User

MODELS = [
    Tenant, User, Membership, ApiToken, LoginAttempt, Team, TeamMember, Channel,
    Contact, Conversation, Message, Attachment, CannedAnswer, Article, AuditEvent,
]


def up(db, migrator):
    db.create_tables(MODELS, safe=True)
