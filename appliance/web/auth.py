"""Session login for the UI: loading the user, throttling failures, requiring roles."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

from flask import abort, current_app, g, redirect, request, session, url_for

from appliance.web.access import Principal, provider_tenant, require_role, tenant_or_404
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import LoginAttempt, User
from appliance.web.services.passwords import hash_password, needs_rehash, verify_password

# A hash computed once so that unknown e-mails cost as much as wrong passwords.
_DUMMY_HASH = None


def _throttle_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def seconds_locked(email: str) -> int:
    """Seconds until the next login attempt is allowed for this e-mail (0: now)."""
    window = current_app.config["LOGIN_THROTTLE_WINDOW"]
    since = utcnow() - dt.timedelta(seconds=window)
    recent = (
        LoginAttempt.select(LoginAttempt.at)
        .where(LoginAttempt.key == _throttle_key(email), LoginAttempt.at > since)
        .order_by(LoginAttempt.at.asc())
    )
    attempts = list(recent)
    if len(attempts) < current_app.config["LOGIN_THROTTLE_ATTEMPTS"]:
        return 0
    unlock = attempts[0].at + dt.timedelta(seconds=window)
    return max(1, int((unlock - utcnow()).total_seconds()))


def authenticate(email: str, password: str) -> User | None:
    global _DUMMY_HASH
    user = User.get_or_none(User.email == email.strip().lower())
    if user is None or not user.is_active:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password("not-a-real-password")
        verify_password(_DUMMY_HASH, password)
        LoginAttempt.create(key=_throttle_key(email))
        return None
    if not verify_password(user.password_hash, password):
        LoginAttempt.create(key=_throttle_key(email))
        return None
    LoginAttempt.delete().where(LoginAttempt.key == _throttle_key(email)).execute()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    user.save()
    return user


def login_user(user: User) -> None:
    session.clear()  # a fresh session on login: no fixation
    session.permanent = True
    session["user_id"] = user.id


def load_user() -> User | None:
    if "user" in g:
        return g.user
    user_id = session.get("user_id")
    user = User.get_or_none(User.id == user_id) if user_id else None
    if user is not None and not user.is_active:
        user = None
    g.user = user
    g.principal = Principal.for_user(user) if user else None
    return user


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if load_user() is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def tenant_view(minimum: str = "agent"):
    """For routes under /t/<tenant_id>/: login, then the role in that tenant."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(tenant_id, *args, **kwargs):
            if load_user() is None:
                return redirect(url_for("auth.login", next=request.path))
            tenant = tenant_or_404(g.principal, tenant_id, minimum)
            g.tenant = tenant
            g.role = g.principal.role_in(tenant)
            session["tenant_id"] = tenant.id
            return view(tenant, *args, **kwargs)

        wrapped.access_rule = ("tenant", minimum)
        return wrapped

    return decorate


def provider_view(minimum: str = "admin"):
    """For installation-wide pages (licence install, sync): a role in the provider tenant."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if load_user() is None:
                return redirect(url_for("auth.login", next=request.path))
            provider = provider_tenant()
            if provider is None:
                abort(404)
            require_role(g.principal, provider, minimum)
            g.tenant, g.role = provider, g.principal.role_in(provider)
            return view(*args, **kwargs)

        wrapped.access_rule = ("provider", minimum)
        return wrapped

    return decorate
