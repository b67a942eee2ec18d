"""Login, logout, the landing redirect and the organisation switcher."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from peewee import DatabaseError

from appliance.web.access import is_provider_admin
from appliance.web.auth import (
    authenticate,
    begin_second_factor,
    check_second_factor,
    load_user,
    login_required,
    login_user,
    login_wait,
    logout_user,
    pending_user,
    safe_next_path,
    totp_wait,
)
from appliance.web.models.audit import record
from appliance.web.models.tenancy import PROVIDER, Tenant, User
from appliance.web.services import ServiceError, lifecycle, totp

auth = Blueprint("auth", __name__)


def _login_page(status: int, next_path=None):
    return render_template("login.html", next=safe_next_path(next_path) or ""), status


def _minutes(seconds: int) -> int:
    return seconds // 60 + 1


def audit_failed_login(email: str) -> None:
    # The account's id when the e-mail names one, never the typed address (personal data,
    # and a password pasted into the e-mail field must not land in the trail).
    user = User.get_or_none(User.email == email.strip().lower()) if email else None
    record("auth.login_failed", actor_id=None, target=f"user:{user.id}" if user else None,
           known_account=user is not None)


@auth.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return _login_page(200, request.args.get("next"))
    email = (request.form.get("email") or "").strip()[:254]
    password = (request.form.get("password") or "")[:1000]
    next_path = safe_next_path(request.form.get("next"))
    wait = login_wait(email) if email else 0
    if wait:
        flash(f"Too many failed logins from here for this account. Try again in {_minutes(wait)} minute(s).", "error")
        return _login_page(429, next_path)
    user = authenticate(email, password) if email and password else None
    if user is None:
        audit_failed_login(email)
        flash("Wrong e-mail or password.", "error")
        return _login_page(401, next_path)
    if totp.is_enrolled(user):
        begin_second_factor(user, next_path)
        return redirect(url_for("auth.login_totp"))
    login_user(user)
    record("auth.login", actor_id=user.id, target=f"user:{user.id}")
    return redirect(next_path or url_for("auth.home"))


@auth.route("/login/totp", methods=["GET", "POST"])
def login_totp():
    user = pending_user()
    if user is None:
        flash("Log in with your password first.", "error")
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("login_totp.html")
    wait = totp_wait(user)
    if wait:
        flash(f"Too many wrong codes. Try again in {_minutes(wait)} minute(s).", "error")
        return render_template("login_totp.html"), 429
    if not check_second_factor(user, (request.form.get("code") or "")[:40]):
        flash("That code is not right, or it was used already. Wait for the next one.", "error")
        return render_template("login_totp.html"), 401
    next_path = safe_next_path(session.get("pending_next"))
    login_user(user)
    record("auth.login", actor_id=user.id, target=f"user:{user.id}", second_factor="totp")
    return redirect(next_path or url_for("auth.home"))


@auth.route("/logout", methods=["POST"])
def logout():
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@auth.route("/")
@login_required
def home():
    tenants = list(g.principal.reachable_tenants())
    if not tenants:
        return render_template("no_tenant.html"), 403
    remembered = session.get("tenant_id")
    target = next((t for t in tenants if t.id == remembered), tenants[0])
    return redirect(home_url(target))


def home_url(tenant) -> str:
    """The provider's admins start on the dashboard; everyone else, and every other tenant, on the inbox."""
    if tenant.level == PROVIDER and is_provider_admin(g.principal):
        return url_for("dashboard.page")
    return url_for("inbox.index", tenant_id=tenant.id)


@auth.route("/switch", methods=["POST"])
@login_required
def switch():
    try:
        tenant_id = int(request.form.get("tenant_id", ""))
    except ValueError:
        abort(400, description="Pick an organisation from the list.")
    target = Tenant.get_or_none(Tenant.id == tenant_id)
    if target is not None and target.level == PROVIDER:
        return redirect(home_url(target))
    return redirect(url_for("inbox.index", tenant_id=tenant_id))


@auth.app_context_processor
def _layout_context():
    try:
        return _user_context()
    except DatabaseError:  # the error page for "database down" must still render
        return {"current_user": None, "tenant": None, "role": None, "look": None}


def _user_context():
    user = load_user() if request.endpoint and not request.endpoint.startswith("public.") else None
    tenant = g.get("tenant")
    # Sub-accounts without branding of their own show their parent's colour and logo.
    context = {"current_user": user, "tenant": tenant, "role": g.get("role"),
               "look": lifecycle.branding_of(tenant) if tenant is not None else None}
    if user is not None:
        context["switcher"] = list(g.principal.reachable_tenants().limit(200))
        context["provider_admin"] = is_provider_admin(g.principal)
        if tenant is not None:
            context["home_url"] = (url_for("dashboard.page") if tenant.level == PROVIDER and context["provider_admin"]
                                   else url_for("inbox.index", tenant_id=tenant.id))
    return context


# --- password-reset links (made by an admin; appliance.web.services.lifecycle) -------------

def _reset_page(status: int, key: str, valid: bool):
    response = current_app.make_response((render_template("password_reset.html", key=key, valid=valid), status))
    # The link is the secret: never sent on as a Referer, never kept in a cache.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@auth.route("/password-reset/<key>", methods=["GET", "POST"])
def password_reset(key):
    if request.method == "GET":
        valid = lifecycle.reset_for(key) is not None
        if not valid:
            flash("This link is used, expired or replaced by a newer one: ask your administrator for a new one.",
                  "error")
        return _reset_page(200 if valid else 410, key, valid)
    new, again = (request.form.get("new") or "")[:1000], (request.form.get("again") or "")[:1000]
    if new != again:
        flash("The two passwords differ: type the same one twice.", "error")
        return _reset_page(422, key, lifecycle.reset_for(key) is not None)
    try:
        lifecycle.redeem(key, new)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _reset_page(exc.status, key, exc.status != 410)
    logout_user()
    flash("Password set. Log in with it now.", "info")
    return redirect(url_for("auth.login"))
