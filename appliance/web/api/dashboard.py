"""The provider's dashboard figures in the API (the same as the /dashboard page)."""

from __future__ import annotations

from flask import jsonify

from appliance.web.access import provider_tenant
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.services import dashboard as figures


@api.route("/dashboard")
@spec("The installation at a glance (provider admins): tenants, seats against the licence, conversations "
      "per local day, channels with problems, worker and sync", role="admin", scope="provider", tag="reports",
      response=R.DASHBOARD)
def dashboard():
    return jsonify(figures.of_app(provider_tenant()))
