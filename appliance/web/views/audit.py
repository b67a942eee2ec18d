"""The audit viewer for admins: filters and CSV export of the events they may see."""

from __future__ import annotations

from flask import Blueprint, Response, g, render_template, request

from appliance.web.access import is_provider_admin
from appliance.web.models.audit import verify
from appliance.web.services import ServiceError
from appliance.web.services import audit as audit_service
from appliance.web.views import helpers

audit_pages = Blueprint("audit", __name__, url_prefix="/t/<id:tenant_id>/audit")


@audit_pages.route("")
@helpers.tenant_view("admin")
def index(tenant):
    try:
        filters = audit_service.Filters.parse(request.args)
    except ServiceError as exc:
        return render_template("audit/index.html", events=[], filters=audit_service.Filters(), error=str(exc),
                               chain=None), exc.status
    events = list(audit_service.events_for(tenant, filters).limit(audit_service.PAGE))
    chain = verify() if is_provider_admin(g.principal) else None  # the whole chain: installation-wide
    return render_template("audit/index.html", events=events, filters=filters, error=None, chain=chain)


@audit_pages.route("/export.csv")
@helpers.tenant_view("admin")
def export(tenant):
    try:
        filters = audit_service.Filters.parse(request.args)
    except ServiceError as exc:
        return Response(str(exc) + "\n", status=exc.status, mimetype="text/plain")
    body = audit_service.export_csv(tenant, filters, actor_id=g.principal.user_id)
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="audit-tenant-{tenant.id}.csv"'})
