"""The provider admin's system page: the installation's state at a glance."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from appliance.web.auth import provider_view
from appliance.web.system_status import collect

system = Blueprint("system", __name__, url_prefix="/admin/system")


@system.route("/")
@provider_view("admin")
def page():
    checks = collect(current_app.extensions["appliance_instance"], current_app.extensions["database"])
    worst = "error" if any(c.level == "error" for c in checks) else (
        "warn" if any(c.level == "warn" for c in checks) else "ok")
    return render_template("system/index.html", checks=checks, worst=worst)
