"""Session login for the UI: checking passwords and second factors, throttling failures,
server-side sessions, the TOTP-required gate, and the view decorators requiring roles."""

from __future__ import annotations

import datetime as dt
import functools
from urllib.parse import quote, urlsplit

from flask import abort, current_app, g, redirect, request, session, url_for

from appliance.web.access import Principal, provider_tenant, require_role, tenant_or_404
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import User
from appliance.web.services import sessions, throttle, totp
from appliance.web.services.passwords import hash_password, needs_rehash, verify_password

# A hash computed once so that unknown e-mails cost as much as wrong passwords.
_DUMMY_HASH = None
# Between a right password and the second factor: how long the half-login lasts.
SECOND_FACTOR_SECONDS = 300
# Endpoints a user who must enrol TOTP first can still reach.
ENROLMENT_ENDPOINTS = {"account.totp", "account.totp_start", "account.totp_confirm", "auth.logout",
                       "auth.login", "auth.login_totp", "static"}
# Endpoints a user who must replace a password someone else chose can still reach.
PASSWORD_CHANGE_ENDPOINTS = {"account.index", "account.password", "auth.logout", "auth.login", "auth.login_totp",
                             "static"}


# --- where to go after login ------------------------------------------------------------

def safe_next_path(target: str | None) -> str | None:
    """A same-origin path rebuilt from the parsed ``target``, or None.

    Rebuilt rather than checked: browsers drop tabs and newlines and read backslashes
    as slashes, so "/\\t/evil" or "/\\\\evil" would leave the site if passed on as typed.
    """
    if not target or len(target) > 2000 or any(ord(c) < 32 or ord(c) == 127 or c == "\\" for c in target):
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    path = "/" + quote(parts.path, safe="/%:@!$&'()*+,;=-._~").lstrip("/")
    query = quote(parts.query, safe="=&%+:@/!$'()*,;-._~") if parts.query else ""
    return path + (f"?{query}" if query else "")


# --- passwords, throttled -------------------------------------------------------------------

def _window() -> int:
    return int(current_app.config["LOGIN_THROTTLE_WINDOW"])


def login_wait(email: str) -> int:
    """Seconds before this address may try this account again (0: now).

    The lock is per address and account, so a stranger failing on purpose cannot lock
    the owner out; the per-address limit stops one address spraying many accounts.
    """
    address = throttle.client_address()
    limits = throttle.limits()
    return max(
        throttle.lock_wait("login.pair", throttle.digest(address, email),
                           int(current_app.config["LOGIN_THROTTLE_ATTEMPTS"]), _window()),
        throttle.lock_wait("login.address", throttle.digest(address), int(limits["login_per_address"]), _window()),
    )


def account_locked(user: User | None, email: str) -> bool:
    """Too many failures for the account from everywhere: a distributed guess. Users with TOTP
    are exempt, since a password alone does not get anyone into their account."""
    if user is not None and totp.is_enrolled(user):
        return False
    return bool(throttle.lock_wait("login.account", throttle.digest(email), int(throttle.limits()["login_per_account"]),
                                   _window()))


def _note_failed_login(email: str) -> None:
    address = throttle.client_address()
    for scope, key in (("login.pair", throttle.digest(address, email)), ("login.address", throttle.digest(address)),
                       ("login.account", throttle.digest(email))):
        throttle.note_failure(scope, key)


def authenticate(email: str, password: str) -> User | None:
    global _DUMMY_HASH
    email = email.strip().lower()
    user = User.get_or_none(User.email == email)
    if user is None or not user.is_active or account_locked(user, email):
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password("not-a-real-password")
        verify_password(_DUMMY_HASH, password)
        _note_failed_login(email)
        return None
    if not verify_password(user.password_hash, password):
        _note_failed_login(email)
        return None
    throttle.clear("login.pair", throttle.digest(throttle.client_address(), email))
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.save()
    return user


# --- the second factor ------------------------------------------------------------------------

def begin_second_factor(user: User, next_path: str | None) -> None:
    session.clear()
    session["pending_user_id"] = user.id
    session["pending_since"] = utcnow().isoformat()
    session["pending_next"] = next_path or ""


def pending_user() -> User | None:
    user_id, since = session.get("pending_user_id"), session.get("pending_since")
    if not user_id or not since:
        return None
    try:
        started = dt.datetime.fromisoformat(since)
    except (TypeError, ValueError):
        return None
    if (utcnow() - started).total_seconds() > SECOND_FACTOR_SECONDS:
        return None
    user = User.get_or_none(User.id == user_id)
    return user if user is not None and user.is_active else None


def totp_wait(user: User) -> int:
    return throttle.lock_wait("totp.account", throttle.digest(user.id), int(throttle.limits()["totp_attempts"]),
                              _window())


def check_second_factor(user: User, code: str) -> bool:
    """A TOTP or recovery code, throttled per account like passwords."""
    if totp_wait(user):
        return False
    if totp.verify(user, code):
        throttle.clear("totp.account", throttle.digest(user.id))
        return True
    throttle.note_failure("totp.account", throttle.digest(user.id))
    return False


# --- sessions -------------------------------------------------------------------------------

def login_user(user: User) -> None:
    session.clear()  # a fresh session on login: no fixation
    session.permanent = True
    session["sid"] = sessions.start(user)
    session["user_id"] = user.id
    User.update(last_login_at=utcnow()).where(User.id == user.id).execute()
    g.pop("user", None)


def logout_user() -> None:
    sessions.end(session.get("sid"))
    session.clear()
    g.user, g.principal = None, None


def load_user() -> User | None:
    if "user" in g:
        return g.user
    user = None
    row = sessions.resume(session.get("sid")) if session.get("user_id") else None
    if row is not None and row.user_id == session.get("user_id"):
        user = User.get_or_none(User.id == row.user_id)
        if user is not None and not user.is_active:
            user = None
    g.user = user
    g.principal = Principal.for_user(user) if user else None
    return user


def totp_setting() -> bool:
    return bool(current_app.extensions["appliance_instance"]["admin_totp_required"])


def must_enrol(user: User | None) -> bool:
    return user is not None and totp.is_required(user, totp_setting()) and not totp.is_enrolled(user)


def must_change_password(user: User | None) -> bool:
    return user is not None and bool(user.must_change_password)


def enrolment_gate():
    """Before every UI request: a user who must replace their password reaches only the
    password change, then one who must enrol TOTP only the enrolment pages."""
    endpoint = request.endpoint or ""
    if endpoint.startswith(("public.", "api.")) or not session.get("user_id"):
        return None
    user = load_user()
    if must_change_password(user):
        return None if endpoint in PASSWORD_CHANGE_ENDPOINTS else redirect(url_for("account.index"))
    if endpoint not in ENROLMENT_ENDPOINTS and must_enrol(user):
        return redirect(url_for("account.totp"))
    return None


# --- view decorators ------------------------------------------------------------------------

def _to_login():
    return redirect(url_for("auth.login", next=safe_next_path(request.full_path.rstrip("?")) or None))


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if load_user() is None:
            return _to_login()
        return view(*args, **kwargs)

    return wrapped


def tenant_view(minimum: str = "agent"):
    """For routes under /t/<tenant_id>/: login, then the role in that tenant."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(tenant_id, *args, **kwargs):
            if load_user() is None:
                return _to_login()
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
                return _to_login()
            provider = provider_tenant()
            if provider is None:
                abort(404)
            require_role(g.principal, provider, minimum)
            g.tenant, g.role = provider, g.principal.role_in(provider)
            return view(*args, **kwargs)

        wrapped.access_rule = ("provider", minimum)
        return wrapped

    return decorate
