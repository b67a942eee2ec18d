"""Teams and routing, for a tenant's admins: teams and their members, who takes round-robin
work (supervisors' and admins' opt-in) and how much (the tenant's capacity, a member's own)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from appliance.web.models.contact_center import Team
from appliance.web.models.tenancy import Membership, User
from appliance.web.services import ServiceError, live, routing
from appliance.web.views.helpers import form_bool, form_text, owned_or_404, tenant_view

routing_pages = Blueprint("routing", __name__, url_prefix="/t/<id:tenant_id>/admin")


def _render(tenant, status=200, form=None):
    teams = routing.teams_of(tenant)
    members = routing.member_ids(teams)
    people = routing.eligible_users(tenant)
    own = list(Membership.select(Membership, User).join(User).where(Membership.tenant == tenant.id)
               .order_by(User.name, Membership.id))
    ids = {u.id for u in people} | {m.user_id for m in own}
    return render_template(
        "admin/teams.html", teams=teams, members=members, people=people, names={u.id: u.name for u in people},
        own=own, load=routing.open_load(ids), presence=live.presence_of(ids, **live.thresholds()),
        form=form or {}, max_capacity=routing.MAX_CAPACITY), status


def _act(tenant, call, message):
    """Run one change: the page again with the service's message when refused, else back to it."""
    try:
        result = call()
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render(tenant, exc.status)
    flash(message(result) if callable(message) else message, "info")
    return redirect(url_for("routing.teams", tenant_id=tenant.id))


def _user_id() -> int:
    raw = request.form.get("user_id", "")
    if not (raw.isdigit() and len(raw) <= 18):
        abort(400, description="user_id: pick a person from the list.")
    return int(raw)


@routing_pages.route("/teams")
@tenant_view("admin")
def teams(tenant):
    return _render(tenant)


@routing_pages.route("/teams", methods=["POST"])
@tenant_view("admin")
def create_team(tenant):
    name = form_text("name", 200)
    try:
        team = routing.create_team(tenant, name, actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render(tenant, exc.status, {"name": name})
    flash(f"Team {team.name} created: add its members below.", "info")
    return redirect(url_for("routing.teams", tenant_id=tenant.id))


@routing_pages.route("/teams/<id:team_id>", methods=["POST"])
@tenant_view("admin")
def rename_team(tenant, team_id):
    team = owned_or_404(Team, team_id, tenant, "admin")
    return _act(tenant, lambda: routing.rename_team(team, form_text("name", 200), actor_id=g.principal.user_id),
                lambda renamed: f"Team renamed to {renamed.name}.")


@routing_pages.route("/teams/<id:team_id>/delete", methods=["POST"])
@tenant_view("admin")
def delete_team(tenant, team_id):
    team = owned_or_404(Team, team_id, tenant, "admin")
    return _act(tenant, lambda: routing.delete_team(team, actor_id=g.principal.user_id),
                f"Team {team.name} deleted; its channels and conversations go on without a team.")


@routing_pages.route("/teams/<id:team_id>/members", methods=["POST"])
@tenant_view("admin")
def add_team_member(tenant, team_id):
    team = owned_or_404(Team, team_id, tenant, "admin")
    user_id = _user_id()
    return _act(tenant, lambda: routing.add_member(team, user_id, actor_id=g.principal.user_id),
                f"Added to {team.name}.")


@routing_pages.route("/teams/<id:team_id>/members/remove", methods=["POST"])
@tenant_view("admin")
def remove_team_member(tenant, team_id):
    team = owned_or_404(Team, team_id, tenant, "admin")
    user_id = _user_id()
    return _act(tenant, lambda: routing.remove_member(team, user_id, actor_id=g.principal.user_id),
                f"Removed from {team.name}.")


@routing_pages.route("/routing", methods=["POST"])
@tenant_view("admin")
def capacity(tenant):
    value = form_text("agent_capacity", 20).strip()
    return _act(tenant, lambda: routing.set_tenant_capacity(tenant, value, actor_id=g.principal.user_id),
                "Routing saved.")


@routing_pages.route("/routing/members/<id:member_id>", methods=["POST"])
@tenant_view("admin")
def member_routing(tenant, member_id):
    member = owned_or_404(Membership, member_id, tenant, "admin")
    opted, value = form_bool("takes_conversations"), form_text("capacity", 20).strip()
    return _act(tenant, lambda: routing.set_member_routing(member, takes_conversations=opted, capacity=value,
                                                           actor_id=g.principal.user_id),
                "Member's routing saved.")
