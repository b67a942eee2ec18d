"""Reports and the supervisor's live view in the API (the same figures as the pages)."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request

from appliance.core.calendar import zone
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.services import reports, supervisor
from appliance.web.validation import F

REPORT_QUERY = {
    "from": F("string", max_length=10, description="First local day, YYYY-MM-DD (default: 30 days ago)"),
    "to": F("string", max_length=10, description="Local day after the last one, YYYY-MM-DD (default: tomorrow)"),
    "grain": F("string", enum=reports.GRAINS),
    "subaccount": F("integer", description="Only this tenant of the subtree (and its own sub-accounts)"),
    "format": F("string", enum=("json", "csv")),
    "table": F("string", enum=reports.TABLES, description="With format=csv: which table"),
}


@api.route("/tenants/<id:tenant_id>/reports")
@spec("Report figures of a tenant and its sub-accounts per period, channel, team and agent "
      "(local days, 'to' exclusive; durations in seconds)", role="supervisor", tag="reports", query=REPORT_QUERY,
      response=R.REPORT)
def report(tenant):
    figures = reports.from_query(tenant, request.args, zone(current_app.extensions["appliance_instance"].settings))
    if request.args.get("format") == "csv":
        return Response(reports.as_csv(figures, request.args.get("table") or "series"), mimetype="text/csv")
    return jsonify(figures)


@api.route("/tenants/<id:tenant_id>/supervisor")
@spec("Live queues per team and channel, and agents with presence and open load", role="supervisor",
      tag="reports", response=R.SUPERVISOR)
def supervisor_view(tenant):
    return jsonify(supervisor.view(tenant))
