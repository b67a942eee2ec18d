"""TOTP second factor (RFC 6238, pyotp) with recovery codes.

The shared secret is sealed with the provider's data key (users are installation-wide),
recovery codes are hashed like passwords, and a code works once: the time step of the
last accepted code is kept and only a later step is accepted, in one conditional UPDATE
so two requests racing with the same code cannot both win.
"""

from __future__ import annotations

import hmac
import secrets
import uuid

import pyotp
import segno

from appliance.core import clock
from appliance.web.access import provider_tenant
from appliance.web.crypto.keyring import get_keyring
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.security import RecoveryCode, TotpCredential
from appliance.web.models.tenancy import Membership, Tenant, User
from appliance.web.services import Conflict, ServiceError
from appliance.web.services.passwords import hash_password, verify_password

ISSUER = "Contact appliance"
RECOVERY_CODES = 10
DRIFT_STEPS = 1  # accept the step before and after: phone clocks drift
_TABLE, _COLUMN = "totp_credential", "secret"


def _seal(tenant_id: int, uid: str, secret: str) -> bytes:
    return get_keyring().seal(tenant_id, _TABLE, _COLUMN, uuid.UUID(uid), secret.encode())


def _secret(row: TotpCredential) -> str:
    return get_keyring().open(row.key_tenant_id, _TABLE, _COLUMN, uuid.UUID(row.uid), bytes(row.secret)).decode()


def credential(user: User) -> TotpCredential | None:
    return TotpCredential.get_or_none(TotpCredential.user == user.id)


def is_enrolled(user: User) -> bool:
    return TotpCredential.select().where(TotpCredential.user == user.id,
                                         TotpCredential.confirmed_at.is_null(False)).exists()


def is_required(user: User, setting_on: bool) -> bool:
    """Required for anyone holding an admin role somewhere, when the installation says so."""
    if not setting_on:
        return False
    return (Membership.select().join(Tenant)
            .where(Membership.user == user.id, Membership.role == "admin", Tenant.is_active == True).exists())


def begin(user: User) -> dict:
    """Start (or restart) enrolment: a new secret, its otpauth URI and the QR code as inline SVG."""
    if is_enrolled(user):
        raise Conflict("TOTP is set up already; ask a provider admin to reset it to enrol a new device.")
    provider = provider_tenant()
    if provider is None:
        raise ServiceError("The installation has no provider tenant yet.", 409)
    TotpCredential.delete().where(TotpCredential.user == user.id).execute()
    secret, uid = pyotp.random_base32(), str(uuid.uuid4())
    TotpCredential.create(user=user, key_tenant_id=provider.id, uid=uid, secret=_seal(provider.id, uid, secret),
                          last_counter=0, created_at=utcnow())
    return enrolment(user)


def enrolment(user: User) -> dict:
    row = credential(user)
    if row is None or row.confirmed_at is not None:
        raise ServiceError("No TOTP enrolment is in progress.", 409)
    secret = _secret(row)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return {"secret": secret, "uri": uri, "svg": segno.make(uri, error="m").svg_inline(scale=4)}


def _matching_counter(secret: str, code: str) -> int | None:
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = clock.now()
    base = totp.timecode(now)
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return base + offset
    return None


def _use_counter(row: TotpCredential, counter: int) -> bool:
    """Accept ``counter`` once: only a step later than every step accepted before."""
    updated = (TotpCredential.update(last_counter=counter)
               .where(TotpCredential.id == row.id, TotpCredential.last_counter < counter).execute())
    return updated == 1


def confirm(user: User, code: str) -> list[str]:
    """Finish enrolment with a first code; returns the recovery codes (shown once)."""
    row = credential(user)
    if row is None or row.confirmed_at is not None:
        raise ServiceError("Start TOTP enrolment first.", 409)
    counter = _matching_counter(_secret(row), code or "")
    if counter is None or not _use_counter(row, counter):
        raise ServiceError("That code is not right: enter the 6 digits your app shows now.", 422)
    TotpCredential.update(confirmed_at=utcnow()).where(TotpCredential.id == row.id).execute()
    codes = new_recovery_codes(user)
    record("totp.enrol", actor_id=user.id, target=f"user:{user.id}")
    return codes


def new_recovery_codes(user: User) -> list[str]:
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODES)]
    RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
    RecoveryCode.insert_many([{"user": user.id, "code_hash": hash_password(c)} for c in codes]).execute()
    return codes


def verify(user: User, code: str) -> bool:
    """A current TOTP code (once) or an unused recovery code (once)."""
    row = credential(user)
    if row is None or row.confirmed_at is None:
        return False
    code = (code or "").strip()[:40]
    counter = _matching_counter(_secret(row), code)
    if counter is not None:
        return _use_counter(row, counter)
    return _use_recovery_code(user, code)


def _use_recovery_code(user: User, code: str) -> bool:
    code = code.lower().replace(" ", "")
    if len(code) != 17:
        return False
    for rc in RecoveryCode.select().where(RecoveryCode.user == user.id, RecoveryCode.used_at.is_null()):
        if verify_password(rc.code_hash, code):
            used = (RecoveryCode.update(used_at=utcnow())
                    .where(RecoveryCode.id == rc.id, RecoveryCode.used_at.is_null()).execute())
            if used:
                record("totp.recovery_code_used", actor_id=user.id, target=f"user:{user.id}")
            return used == 1
    return False


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.select().where(RecoveryCode.user == user.id, RecoveryCode.used_at.is_null()).count()


def reset(user: User, actor_id=None) -> None:
    """Remove a user's enrolment (a lost phone); they enrol again at their next login."""
    TotpCredential.delete().where(TotpCredential.user == user.id).execute()
    RecoveryCode.delete().where(RecoveryCode.user == user.id).execute()
    record("totp.reset", actor_id=actor_id, target=f"user:{user.id}")
