"""The provider admin's sync page: on/off, exactly what would be sent, recent sends."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from appliance.core.identity import IdentityError
from appliance.web.access import is_provider_admin
from appliance.web.auth import load_user, provider_view
from appliance.web.sync import service

sync_admin = Blueprint("sync_admin", __name__, url_prefix="/admin/sync")


@sync_admin.before_app_request
def _nav_link():
    """A "Sync" entry in the admin menu for the provider's admins (base.html's extra_admin_nav)."""
    if not request.endpoint or request.endpoint.startswith(("public.", "static", "api.")):
        return
    if load_user() is not None and is_provider_admin(g.principal):
        g.extra_admin_nav = [*g.get("extra_admin_nav", []), ("Sync", url_for("sync_admin.page"))]


def _instance():
    return current_app.extensions["appliance_instance"]


@sync_admin.get("/")
@provider_view("admin")
def page():
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
        reports=[envelope["report"] for envelope in json.loads(preview)["reports"]] if preview else [],
        preview_error=preview_error,
        recent=service.recent_sends(),
    )


@sync_admin.post("/toggle")
@provider_view("admin")
def toggle():
    wanted = request.form.get("enabled") == "1"
    try:
        changed = service.set_enabled(_instance(), wanted, actor_id=g.user.id, via="ui")
    except service.SyncLockedOff as exc:
        flash(str(exc), "error")
        return redirect(url_for("sync_admin.page")), 303
    if changed:
        flash("Sync turned on." if wanted else "Sync turned off.", "info")
    return redirect(url_for("sync_admin.page")), 303
