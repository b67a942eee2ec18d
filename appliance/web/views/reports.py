"""Reports pages: figures of a tenant and its sub-accounts over local days, as charts,
tables and CSV (appliance/web/services/reports.py computes them)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, current_app, flash, render_template, request

from appliance.core.calendar import zone
from appliance.web.export import stacked_bars_svg
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, reports
from appliance.web.views import helpers

report_pages = Blueprint("reports", __name__)

LABELS = {"day": lambda d: f"{d:%d %b}", "week": lambda d: f"wk {d:%d %b}", "month": lambda d: f"{d:%b %Y}"}


def request_report(tenant: Tenant) -> dict:
    return reports.from_query(tenant, request.args, zone(current_app.extensions["appliance_instance"].settings))


def _charts(report: dict) -> dict:
    label = LABELS[report["grain"]]
    series = [(dt.date.fromisoformat(row["period"]), row) for row in report["series"]]
    every = max(1, len(series) // 8)
    return {
        "conversations": stacked_bars_svg([(p, r["opened"], r["resolved"]) for p, r in series], label=label,
                                          title="Conversations opened and resolved", names=("opened", "resolved"),
                                          label_every=every),
        "messages": stacked_bars_svg([(p, r["messages_in"], r["messages_out"]) for p, r in series], label=label,
                                     title="Messages in and out", label_every=every),
    }


@report_pages.route("/t/<id:tenant_id>/reports")
@helpers.tenant_view("supervisor")
def index(tenant):
    subtree = list(Tenant.select().where(Tenant.path.startswith(tenant.path), Tenant.id != tenant.id)
                   .order_by(Tenant.path))
    try:
        report = request_report(tenant)
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_template("reports/index.html", report=None, subtree=subtree, grains=reports.GRAINS,
                               duration=reports.duration), exc.status
    return render_template("reports/index.html", report=report, charts=_charts(report), subtree=subtree,
                           grains=reports.GRAINS, duration=reports.duration, tables=reports.TABLES)


@report_pages.route("/t/<id:tenant_id>/reports.csv")
@helpers.tenant_view("supervisor")
def csv(tenant):
    table = request.args.get("table", "series")
    try:
        report = request_report(tenant)
        text = reports.as_csv(report, table, bom=request.args.get("bom") == "1")
    except ServiceError as exc:
        abort(exc.status, description=str(exc))
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition":
            f'attachment; filename="report-{tenant.slug}-{table}-{report["from"]}-{report["to"]}.csv"'})
