"""Admins acting on another user's security: end their sessions, reset their TOTP or password,
deactivate and reactivate them."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, request, url_for

from appliance.web.access import is_provider_admin
from appliance.web.models.tenancy import Membership, User
from appliance.web.services import ServiceError, lifecycle, sessions, totp
from appliance.web.views import helpers
from appliance.web.views.helpers import owned_or_404

security = Blueprint("security", __name__, url_prefix="/t/<id:tenant_id>/admin/users/<id:member_id>")


def _back(tenant):
    return redirect(url_for("admin.users", tenant_id=tenant.id))


def _provider_only():
    if not is_provider_admin(g.principal):
        abort(403, description="Only the provider's admins can do this.")


@security.route("/sessions/end", methods=["POST"])
@helpers.tenant_view("admin")
def end_sessions(tenant, member_id):
    member = owned_or_404(Membership, member_id, tenant, "admin")
    try:
        count = sessions.kill_user_sessions(g.principal, member.user_id, actor_id=g.principal.user_id)
    except ServiceError as exc:
        abort(exc.status, description=str(exc))
    flash(f"{count} session(s) ended.", "info")
    return _back(tenant)


@security.route("/totp/reset", methods=["POST"])
@helpers.tenant_view("admin")
def reset_totp(tenant, member_id):
    _provider_only()
    member = owned_or_404(Membership, member_id, tenant, "admin")
    totp.reset(User.get_by_id(member.user_id), actor_id=g.principal.user_id)
    sessions.end_all(member.user_id, actor_id=g.principal.user_id, reason="totp-reset")
    flash("Two-factor login reset: the user enrols again at their next login.", "info")
    return _back(tenant)


def _set_active(tenant, member_id, active: bool):
    member = owned_or_404(Membership, member_id, tenant, "admin")
    try:
        lifecycle.set_user_active(g.principal, User.get_by_id(member.user_id), active, actor_id=g.principal.user_id)
    except ServiceError as exc:
        if exc.status == 403:
            abort(403, description=str(exc))
        flash(str(exc), "error")
        return _back(tenant)
    flash("User deactivated: their sessions and API tokens stopped." if not active else "User reactivated.", "info")
    return _back(tenant)


@security.route("/deactivate", methods=["POST"])
@helpers.tenant_view("admin")
def deactivate(tenant, member_id):
    return _set_active(tenant, member_id, False)


@security.route("/reactivate", methods=["POST"])
@helpers.tenant_view("admin")
def reactivate(tenant, member_id):
    return _set_active(tenant, member_id, True)


@security.route("/password-reset", methods=["POST"])
@helpers.tenant_view("admin")
def password_reset(tenant, member_id):
    from appliance.web.views.admin import render_users

    member = owned_or_404(Membership, member_id, tenant, "admin")
    settings = current_app.extensions["appliance_instance"].settings
    try:
        answer = lifecycle.create_reset(g.principal, User.get_by_id(member.user_id), settings, request.host_url,
                                        actor_id=g.principal.user_id)
    except ServiceError as exc:
        if exc.status == 403:
            abort(403, description=str(exc))
        flash(str(exc), "error")
        return _back(tenant)
    # Rendered, never flashed: a flash would carry the link in the session cookie.
    return render_users(tenant, 201, reset=answer | {"member_id": member.id})
