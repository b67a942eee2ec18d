"""The e-mail channel's admin pages: mail that could not be read (the quarantine)."""

from __future__ import annotations

from flask import Blueprint, g, render_template, request, url_for

from appliance.web.auth import load_user
from appliance.web.channels.email import service as email
from appliance.web.models.contact_center import Channel
from appliance.web.views import helpers

email_admin = Blueprint("email_admin", __name__, url_prefix="/t/<id:tenant_id>/admin/email")


@email_admin.before_app_request
def _nav_link():
    """An "E-mail quarantine" entry in a tenant's admin menu (base.html shows that menu to
    admins only) when the tenant has an e-mail channel."""
    tenant_id = (request.view_args or {}).get("tenant_id")
    if not isinstance(tenant_id, int) or request.blueprint in ("api", "public") or load_user() is None:
        return
    if Channel.select().where(Channel.tenant == tenant_id, Channel.kind == "email").exists():
        link = ("E-mail quarantine", url_for("email_admin.quarantine", tenant_id=tenant_id))
        g.extra_admin_nav = [*g.get("extra_admin_nav", []), link]


@email_admin.route("/quarantine")
@helpers.tenant_view("admin")
def quarantine(tenant):
    rows = email.quarantined(tenant)
    names = {c.id: c.name for c in Channel.select().where(Channel.tenant == tenant.id, Channel.kind == "email")}
    return render_template("email/quarantine.html", rows=rows, channel_names=names)
