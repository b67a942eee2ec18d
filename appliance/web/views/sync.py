"""The provider admin's sync page: on/off, exactly what would be sent, recent sends."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from appliance.core.identity import IdentityError
from appliance.web.auth import provider_view

sync_admin = Blueprint("sync_admin", __name__, url_prefix="/admin/sync")


@sync_admin.before_app_request
def _nav_link():
    """A "Sync" entry in the admin menu for the provider's admins (base.html's extra_admin_nav)."""
    if not request.endpoint or request.endpoint.startswith(("public.", "static", "api.")):
        return
    from appliance.web.auth import load_user
    from appliance.web.models.tenancy import PROVIDER, Tenant

    if load_user() is None or g.principal is None:
        return
    provider = Tenant.select().where(Tenant.level == PROVIDER).order_by(Tenant.id).first()
    if provider is not None and g.principal.role_in(provider) == "admin":
        g.extra_admin_nav = [*g.get("extra_admin_nav", []), ("Sync", url_for("sync_admin.page"))]


def _instance():
    return current_app.extensions["appliance_instance"]


@sync_admin.get("/")
@provider_view("admin")
def page():
    from appliance.web.sync import service

    instance = _instance()
    try:
        preview = service.preview(instance)
        preview_error = None
    except (IdentityError, ValueError) as exc:
        preview, preview_error = None, str(exc)
    return render_template(
        "sync/index.html",
        info=service.status(instance),
        preview=preview,
        preview_error=preview_error,
        recent=service.recent_sends(),
    )


@sync_admin.post("/toggle")
@provider_view("admin")
def toggle():
    from appliance.web.sync import service

    wanted = request.form.get("enabled") == "1"
    try:
        changed = service.set_enabled(_instance(), wanted, actor_id=g.user.id, via="ui")
    except service.SyncLockedOff as exc:
        flash(str(exc), "error")
        return redirect(url_for("sync_admin.page")), 303
    if changed:
        flash("Sync turned on." if wanted else "Sync turned off.", "info")
    return redirect(url_for("sync_admin.page")), 303
