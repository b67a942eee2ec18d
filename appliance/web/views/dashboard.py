"""The provider's home: tenants, seats against the licence, today's conversations, channel
problems, worker and sync, at a glance (appliance/web/services/dashboard.py)."""

from __future__ import annotations

from flask import Blueprint, g, render_template

from appliance.web.auth import provider_view
from appliance.web.services import dashboard

dashboard_pages = Blueprint("dashboard", __name__)


@dashboard_pages.route("/dashboard")
@provider_view("admin")
def page():
    figures = dashboard.of_app(g.tenant)
    return render_template("dashboard/index.html", d=figures,
                           chart=dashboard.chart_svg(figures["conversations"]["series"]))
