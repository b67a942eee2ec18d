"""Account lifecycle: a user's own name, password-reset links made by admins, and
deactivating and reactivating users and tenants. Every change is audited.

Who may act on a user: an admin of every tenant the user belongs to (the rule
appliance.web.services.sessions applies to ending their sessions), so a tenant admin
can never reset or switch off the provider's staff or a user shared with another account.
Who may act on a tenant: an admin of its parent; a tenant never switches itself off.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets

from appliance.web.access import Principal
from appliance.web.db import LOCK_LICENCE_GROWTH, serialized
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.security import PasswordReset
from appliance.web.models.tenancy import PROVIDER, Tenant, User, role_rank
from appliance.web.services import ServiceError, licence, mailer, sessions
from appliance.web.services.passwords import check_strength, hash_password

log = logging.getLogger(__name__)


# --- the user's own name ------------------------------------------------------------------

def rename_self(user: User, name: str) -> User:
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise ServiceError("name: 1 to 120 characters.", 422)
    User.update(name=name).where(User.id == user.id).execute()
    user.name = name
    record("user.rename", actor_id=user.id, target=f"user:{user.id}")
    return user


# --- acting on other users -------------------------------------------------------------------

def require_manage_user(principal: Principal, user: User, action: str) -> None:
    if user.id == principal.user_id:
        raise ServiceError(f"You cannot {action} yourself here; use your account page.", 422)
    if not sessions.may_manage_user(principal, user.id):
        raise ServiceError(f"Only an admin of every organisation this user belongs to can {action} them.", 403)


def set_user_active(principal: Principal, user: User, active: bool, actor_id=None) -> User:
    require_manage_user(principal, user, "deactivate" if not active else "reactivate")
    if not active:
        return sessions.deactivate_user(user, actor_id=actor_id)
    if not user.is_active:
        User.update(is_active=True).where(User.id == user.id).execute()
        user.is_active = True
        record("user.reactivate", actor_id=actor_id, target=f"user:{user.id}")
    return user


# --- password-reset links ----------------------------------------------------------------------

def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_reset(principal: Principal, user: User, settings: dict, base_url: str, actor_id=None) -> dict:
    """A one-time link for ``user`` to set a new password.

    With the site's relay (``notify_mail``) the link goes to the user's own address and the
    answer does not hold it; without one (or when the relay refuses) the answer holds the
    link, for the admin to hand over. Only the link's hash is stored; a new link replaces
    any earlier unused one.
    """
    require_manage_user(principal, user, "reset the password of")
    if not user.is_active:
        raise ServiceError("This user is deactivated: reactivate them before resetting their password.", 422)
    now = utcnow()
    hours = float(settings.get("password_reset_link_hours") or 24)
    PasswordReset.update(used_at=now).where(PasswordReset.user == user.id, PasswordReset.used_at.is_null()).execute()
    token = secrets.token_urlsafe(32)
    row = PasswordReset.create(user=user, token_hash=_hash(token), created_by=actor_id, created_at=now,
                               expires_at=now + dt.timedelta(hours=hours))
    link = f"{(settings.get('public_url') or base_url).rstrip('/')}/password-reset/{token}"
    answer = {"user_id": user.id, "expires_at": row.expires_at.isoformat() + "Z", "delivery": "shown", "link": link,
              "message": "No mail relay is set up (notify_mail in config.yml): hand this link to the user yourself. "
                         "It works once."}
    try:
        relay = mailer.relay(settings)
    except mailer.MailerConfigError as exc:  # the admin still gets a working link, and the reason
        relay, answer["message"] = None, f"{exc}. Meanwhile hand this link to the user yourself; it works once."
    if relay is not None:
        problem = _mail_link(relay, settings, user, link, row.expires_at)
        if problem is None:
            answer.update(delivery="email", link=None, message=f"A reset link was e-mailed to {user.email}.")
        else:
            answer["message"] = (f"The mail relay refused the message ({problem}): hand this link to the user "
                                 "yourself. It works once.")
    record("user.password_reset_link", actor_id=actor_id, target=f"user:{user.id}", delivery=answer["delivery"])
    return answer


def _mail_link(relay, settings: dict, user: User, link: str, expires_at) -> str | None:
    from appliance.web.channels.email import smtp

    conf = settings["notify_mail"]
    message = mailer.compose(
        conf["from"], [user.email], "Set a new password",
        f"An administrator made a link for you to set a new password for the contact center:\n\n{link}\n\n"
        f"It works once, until {expires_at:%Y-%m-%d %H:%M} UTC. If you did not expect this, tell your "
        "administrator and ignore the link.", footer="Sent by the contact center appliance.")
    try:
        smtp.send(relay, message)
    except (smtp.SmtpTemporaryError, smtp.SmtpPermanentError) as exc:
        log.warning("password-reset link for user %s not mailed: %s", user.id, exc)
        return str(exc)[:200]
    return None


def reset_for(token: str) -> PasswordReset | None:
    """The live reset named by ``token`` (unused, unexpired, its user active), or None."""
    if not token or len(token) > 100:
        return None
    row = PasswordReset.get_or_none(PasswordReset.token_hash == _hash(token))
    if row is None or row.used_at is not None or utcnow() >= row.expires_at:
        return None
    user = User.get_or_none(User.id == row.user_id)
    return row if user is not None and user.is_active else None


def redeem(token: str, new_password: str) -> User:
    row = reset_for(token)
    if row is None:
        raise ServiceError("This link is used, expired or replaced by a newer one: ask your administrator "
                           "for a new one.", 410)
    problem = check_strength(new_password or "")
    if problem:
        raise ServiceError(problem, 422)
    # Used first and only if still unused: two tabs submitting at once set one password.
    if not PasswordReset.update(used_at=utcnow()).where(PasswordReset.id == row.id,
                                                        PasswordReset.used_at.is_null()).execute():
        raise ServiceError("This link was used a moment ago: ask your administrator for a new one.", 410)
    # The user chose it: a forced change (the installer's first admin) is done too.
    User.update(password_hash=hash_password(new_password), must_change_password=False).where(
        User.id == row.user_id).execute()
    sessions.end_all(row.user_id, actor_id=row.user_id, reason="password-reset")
    record("user.password_reset", actor_id=row.user_id, target=f"user:{row.user_id}")
    return User.get_by_id(row.user_id)


# --- tenants -----------------------------------------------------------------------------------

def _require_parent_admin(principal: Principal, tenant: Tenant, action: str) -> Tenant:
    if tenant.level == PROVIDER or tenant.parent_id is None:
        raise ServiceError("The provider tenant cannot be deactivated.", 422)
    parent = Tenant.get_by_id(tenant.parent_id)
    if role_rank(principal.role_in(parent)) < role_rank("admin"):
        raise ServiceError(f"Only an admin of {parent.name} can {action} {tenant.name}.", 403)
    return parent


def deactivate_tenant(principal: Principal, tenant: Tenant, actor_id=None) -> Tenant:
    """Switch ``tenant`` and the tenants below it off: their members lose access, their
    channels refuse traffic, their seats and tenant count are freed; the data stays,
    readable by the admins above."""
    _require_parent_admin(principal, tenant, "deactivate")
    if not tenant.is_active:
        return tenant
    now = utcnow()
    count = Tenant.update(is_active=False, deactivated_at=now, deactivated_with=tenant.id).where(
        Tenant.path.startswith(tenant.path), Tenant.is_active == True).execute()
    record("tenant.deactivate", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}", tenants=count)
    return Tenant.get_by_id(tenant.id)


def reactivate_tenant(principal: Principal, tenant: Tenant, actor_id=None) -> Tenant:
    """Switch ``tenant`` on again, with the tenants below that went off with it (not those
    deactivated on their own before)."""
    parent = _require_parent_admin(principal, tenant, "reactivate")
    if tenant.is_active:
        return tenant
    if not parent.is_active:
        raise ServiceError(f"{parent.name} is deactivated: reactivate it first.", 422)
    with serialized(LOCK_LICENCE_GROWTH):  # the licence counts active tenants and their seats
        licence.check_can_create_tenant()
        count = Tenant.update(is_active=True, deactivated_at=None, deactivated_with=None).where(
            Tenant.path.startswith(tenant.path),
            (Tenant.deactivated_with == tenant.id) | (Tenant.id == tenant.id)).execute()
        record("tenant.reactivate", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}",
               tenants=count)
    return Tenant.get_by_id(tenant.id)


def branding_of(tenant: Tenant) -> Tenant:
    """The tenant whose colour and logo ``tenant`` shows: itself when it set its own, else the
    nearest ancestor that did (the provider always has its own)."""
    if tenant.own_branding or tenant.level == PROVIDER:
        return tenant
    ancestors = {t.id: t for t in Tenant.select().where(Tenant.id.in_(tenant.ancestor_ids()))}
    for tid in reversed(tenant.ancestor_ids()):
        candidate = ancestors.get(tid)
        if candidate is not None and tid != tenant.id and (candidate.own_branding or candidate.level == PROVIDER):
            return candidate
    return tenant
