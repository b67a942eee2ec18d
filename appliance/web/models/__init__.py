"""The web app's models, re-exported; importing the package registers the encrypted ones.

The tables themselves are created by appliance/web/migrations, which keeps its own
frozen copy of each step; tests/test_migrations.py checks that the two agree.
"""

from appliance.web.models.audit import AuditEvent
from appliance.web.models.channels import ChannelConfig, ChannelIdentity, ChannelReceipt, InboundSeen, OutboxMessage
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
from appliance.web.models.crypto import CryptoMaster, KeyRotationJob, TenantKey
from appliance.web.models.licence import InstalledLicence, LicenceClock, TenantProgram
from appliance.web.models.live import LiveEvent, Presence
from appliance.web.models.metering import UsageDay
from appliance.web.models.reports import ConversationTiming, ReportDay, ReportMonth
from appliance.web.models.security import (
    Invitation,
    PasswordReset,
    RecoveryCode,
    ThrottleEvent,
    TotpCredential,
    UserSession,
)
from appliance.web.models.sync import SyncOutbox, SyncRequestDay, SyncState
from appliance.web.models.system import WorkerHeartbeat
from appliance.web.models.tenancy import ApiToken, LoginAttempt, Membership, Tenant, User

__all__ = [
    "ApiToken",
    "Article",
    "Attachment",
    "AuditEvent",
    "CannedAnswer",
    "Channel",
    "ChannelConfig",
    "ChannelIdentity",
    "ChannelReceipt",
    "Contact",
    "Conversation",
    "ConversationTiming",
    "CryptoMaster",
    "InboundSeen",
    "InstalledLicence",
    "Invitation",
    "KeyRotationJob",
    "LicenceClock",
    "LiveEvent",
    "LoginAttempt",
    "Membership",
    "Message",
    "OutboxMessage",
    "PasswordReset",
    "Presence",
    "RecoveryCode",
    "ReportDay",
    "ReportMonth",
    "SyncOutbox",
    "SyncRequestDay",
    "SyncState",
    "Team",
    "TeamMember",
    "Tenant",
    "TenantKey",
    "TenantProgram",
    "ThrottleEvent",
    "TotpCredential",
    "UsageDay",
    "User",
    "UserSession",
    "WorkerHeartbeat",
]
