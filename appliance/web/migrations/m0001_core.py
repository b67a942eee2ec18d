"""The core schema: tenant tree, users, contact-center objects, audit trail."""

from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import (
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
from appliance.web.models.tenancy import ApiToken, LoginAttempt, Membership, Tenant, User

MODELS = [
    Tenant, User, Membership, ApiToken, LoginAttempt, Team, TeamMember, Channel,
    Contact, Conversation, Message, Attachment, CannedAnswer, Article, AuditEvent,
]


def up(db, migrator):
    db.create_tables(MODELS, safe=True)
