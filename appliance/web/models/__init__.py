"""All models; ``ALL_MODELS`` is what migrations and tests create, in dependency order."""

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

ALL_MODELS = [
    Tenant,
    User,
    Membership,
    ApiToken,
    LoginAttempt,
    Team,
    TeamMember,
    Channel,
    Contact,
    Conversation,
    Message,
    Attachment,
    CannedAnswer,
    Article,
    AuditEvent,
]

# issue 4: licences and program assignments
from appliance.web.models.licence import (  # noqa: E402, F401
    LICENSING_MODELS,
    InstalledLicence,
    LicenceClock,
    TenantProgram,
)

ALL_MODELS += LICENSING_MODELS

# issue 6: sync to the vendor (outbox, state rows, daily request counter)
from appliance.web.models.sync import SyncOutbox, SyncRequestDay, SyncState  # noqa: E402

ALL_MODELS += [SyncOutbox, SyncState, SyncRequestDay]

# installation-wide bookkeeping
from appliance.web.models.system import WorkerHeartbeat  # noqa: E402

ALL_MODELS += [WorkerHeartbeat]

# issue 3: encryption at rest (wrapped tenant keys, master key id, rotation progress)
from appliance.web.models.crypto import CRYPTO_MODELS  # noqa: E402

ALL_MODELS += CRYPTO_MODELS

__all__ = [m.__name__ for m in ALL_MODELS] + ["ALL_MODELS"]
