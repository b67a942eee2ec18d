"""The supervisor's live view: queues, agents with presence and load, and reassigning."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from appliance.web.models.contact_center import Channel, Contact, Team
from appliance.web.models.tenancy import Tenant, User
from appliance.web.services import ServiceError, reports, supervisor
from appliance.web.views import helpers

supervisor_pages = Blueprint("supervisor", __name__)


def _by_id(model, ids) -> dict:
    ids = {i for i in ids if i}
    return {row.id: row for row in model.select().where(model.id.in_(ids))} if ids else {}


def _render(tenant, status=200):
    convs = supervisor.open_conversations(tenant)
    live = supervisor.view(tenant)
    tenants = _by_id(Tenant, (c.tenant_id for c in convs))
    return render_template(
        "reports/supervisor.html", live=live, convs=convs,
        eligible=supervisor.eligible(live["agents"], list(tenants.values())),
        contacts=_by_id(Contact, (c.contact_id for c in convs)),
        channels=_by_id(Channel, (c.channel_id for c in convs)),
        teams=_by_id(Team, (c.team_id for c in convs)),
        users=_by_id(User, (c.assignee_id for c in convs)),
        tenants=tenants,
        duration=reports.duration), status


@supervisor_pages.route("/t/<id:tenant_id>/supervisor")
@helpers.tenant_view("supervisor")
def index(tenant):
    return _render(tenant)


@supervisor_pages.route("/t/<id:tenant_id>/supervisor/assign", methods=["POST"])
@helpers.tenant_view("supervisor")
def assign(tenant):
    raw_conv, choice = request.form.get("conversation", ""), request.form.get("assignee", "")
    if not (raw_conv.isdigit() and len(raw_conv) <= 18):
        abort(400, description="conversation: which conversation to reassign (its id).")
    if choice == "none":
        target = None
    elif choice.isdigit() and len(choice) <= 18:
        target = int(choice)
    else:
        abort(400, description="assignee: a user id, or none to put the conversation back in the queue.")
    try:
        conv = supervisor.find_conversation(tenant, int(raw_conv))
        supervisor.reassign(conv, target, actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render(tenant, exc.status)
    flash(f"Conversation #{conv.id} {'put back in the queue' if target is None else 'reassigned'}.", "info")
    return redirect(url_for("supervisor.index", tenant_id=tenant.id))
