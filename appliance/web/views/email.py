"""The e-mail channel's admin pages: mail that could not be read (the quarantine)."""

from __future__ import annotations

from flask import Blueprint, render_template

from appliance.web.channels.email import service as email
from appliance.web.models.contact_center import Channel
from appliance.web.views import helpers

email_admin = Blueprint("email_admin", __name__, url_prefix="/t/<id:tenant_id>/admin/email")


@email_admin.route("/quarantine")
@helpers.tenant_view("admin")
def quarantine(tenant):
    rows = email.quarantined(tenant)
    names = {c.id: c.name for c in Channel.select().where(Channel.tenant == tenant.id, Channel.kind == "email")}
    return render_template("email/quarantine.html", rows=rows, channel_names=names)
