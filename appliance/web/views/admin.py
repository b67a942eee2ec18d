"""Tenant self-service for admins: members, sub-accounts, channels, API tokens, branding."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from appliance.web.access import shared_from_ancestors
from appliance.web.channels import config as channel_config
from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import CHANNEL_KINDS, Channel
from appliance.web.models.tenancy import (
    ACCOUNT,
    ACCOUNT_KINDS,
    PROVIDER,
    ROLES,
    SUBACCOUNT_KINDS,
    ApiToken,
    Membership,
    Tenant,
    User,
)
from appliance.web.services import (
    ServiceError,
    catalogue,
    channel_admin,
    invitations,
    lifecycle,
    logos,
    routing,
    tenants,
)
from appliance.web.services import tokens as token_service
from appliance.web.views import helpers
from appliance.web.views.helpers import form_bool, form_text, owned_or_404

admin = Blueprint("admin", __name__, url_prefix="/t/<id:tenant_id>/admin")

KIND_LABELS = {"webchat": "web chat", "webhook": "webhook (gateway)", "email": "e-mail", "telegram": "Telegram",
               "whatsapp": "WhatsApp", "vk": "VK", "viber": "Viber"}

def _actor():
    return g.principal.user_id


# --- members -----------------------------------------------------------------------------

def render_users(tenant, status=200, form=None, reset=None):
    members = list(
        Membership.select(Membership, User).join(User).where(Membership.tenant == tenant.id).order_by(User.name)
    )
    inherited = list(
        shared_from_ancestors(Membership, tenant).select(Membership, User, Tenant)
        .join_from(Membership, User).join_from(Membership, Tenant).order_by(User.name)
    )
    return render_template("admin/users.html", members=members, inherited=inherited, roles=ROLES,
                           form=form or {}, reset=reset), status


@admin.route("/users")
@helpers.tenant_view("admin")
def users(tenant):
    return render_users(tenant)


@admin.route("/users", methods=["POST"])
@helpers.tenant_view("admin")
def add_member(tenant):
    form = {"email": form_text("email", 300), "name": form_text("name", 200),
            "role": request.form.get("role", "agent"), "shared": form_bool("shared")}
    try:
        answer = invitations.add_by_email(tenant, g.principal, email=form["email"], name=form["name"],
                                          password=request.form.get("password") or "", role=form["role"],
                                          shared=form["shared"], actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_users(tenant, exc.status, form)
    flash(answer["message"], "info")
    return redirect(url_for("admin.users", tenant_id=tenant.id))


@admin.route("/users/<id:member_id>", methods=["POST"])
@helpers.tenant_view("admin")
def update_member(tenant, member_id):
    member = owned_or_404(Membership, member_id, tenant, "admin")
    try:
        tenants.update_member(member, role=request.form.get("role", member.role), shared=form_bool("shared"),
                              available=form_bool("available"), actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_users(tenant, exc.status)
    flash("Member updated.", "info")
    return redirect(url_for("admin.users", tenant_id=tenant.id))


@admin.route("/users/<id:member_id>/remove", methods=["POST"])
@helpers.tenant_view("admin")
def remove_member(tenant, member_id):
    member = owned_or_404(Membership, member_id, tenant, "admin")
    try:
        tenants.remove_member(member, actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_users(tenant, exc.status)
    flash("Member removed.", "info")
    return redirect(url_for("admin.users", tenant_id=tenant.id))


# --- sub-accounts ------------------------------------------------------------------------

def _child_kinds(tenant):
    if tenant.level == PROVIDER:
        return ACCOUNT_KINDS
    if tenant.level == ACCOUNT:
        return SUBACCOUNT_KINDS
    return ()


def _render_subaccounts(tenant, status=200, form=None):
    children = list(Tenant.select().where(Tenant.parent == tenant.id).order_by(Tenant.name))
    return render_template("admin/subaccounts.html", children=children, kinds=_child_kinds(tenant),
                           form=form or {}), status


@admin.route("/subaccounts")
@helpers.tenant_view("admin")
def subaccounts(tenant):
    return _render_subaccounts(tenant)


@admin.route("/subaccounts", methods=["POST"])
@helpers.tenant_view("admin")
def create_subaccount(tenant):
    form = {"name": form_text("name", 200), "kind": request.form.get("kind", "")}
    try:
        child = tenants.create_child(tenant, form["name"], form["kind"], actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_subaccounts(tenant, exc.status, form)
    flash(f"{child.name} created.", "info")
    return redirect(url_for("admin.subaccounts", tenant_id=tenant.id))


@admin.route("/subaccounts/state", methods=["POST"])
@helpers.tenant_view("admin")
def subaccount_state(tenant):
    """Deactivate or reactivate a tenant directly below this one (form fields child_id, action)."""
    raw, action = request.form.get("child_id", ""), request.form.get("action")
    child = Tenant.get_or_none(Tenant.id == int(raw)) if raw.isdigit() and len(raw) <= 18 else None
    if child is None or child.parent_id != tenant.id or action not in ("deactivate", "reactivate"):
        flash("Pick one of the sub-accounts below and deactivate or reactivate it.", "error")
        return _render_subaccounts(tenant, 400)
    try:
        if action == "deactivate":
            lifecycle.deactivate_tenant(g.principal, child, actor_id=_actor())
        else:
            lifecycle.reactivate_tenant(g.principal, child, actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_subaccounts(tenant, exc.status)
    flash(f"{child.name} {action}d." + (" Its data stays, read-only; its channels take no messages and its "
                                        "seats are free." if action == "deactivate" else ""), "info")
    return redirect(url_for("admin.subaccounts", tenant_id=tenant.id))


# --- channels ----------------------------------------------------------------------------

def _render_channels(tenant, status=200, form=None, new_secret=None):
    """``new_secret``: (channel, secret) of a secret just made, shown on this one answer only."""
    own = list(Channel.select().where(Channel.tenant == tenant.id).order_by(Channel.name))
    inherited = list(
        shared_from_ancestors(Channel, tenant).select(Channel, Tenant).join(Tenant).order_by(Channel.name)
    )
    return render_template("admin/channels.html", own=own, inherited=inherited, kinds=CHANNEL_KINDS,
                           teams=routing.teams_of(tenant),
                           kind_labels=KIND_LABELS, config=channel_config.installation_settings(),
                           signed_kinds=catalogue.SIGNED_KINDS, hint=catalogue.signing_secret_hint,
                           new_secret=new_secret, form=form or {}, now=utcnow()), status


@admin.route("/channels")
@helpers.tenant_view("admin")
def channels(tenant):
    return _render_channels(tenant)


@admin.route("/channels", methods=["POST"])
@helpers.tenant_view("admin")
def create_channel(tenant):
    form = {"name": form_text("name", 200), "kind": request.form.get("kind", ""), "shared": form_bool("shared")}
    try:
        channel = catalogue.create_channel(tenant, kind=form["kind"], name=form["name"], shared=form["shared"],
                                           actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_channels(tenant, exc.status, form)
    if channel.kind in catalogue.SIGNED_KINDS:
        # Rendered, not flashed or redirected: the secret must not land in the session cookie.
        flash(f"Channel {channel.name} created. Copy its signing secret now: it is not shown again.", "info")
        return _render_channels(tenant, 201, new_secret=(channel, channel.secret))
    flash(f"Channel {channel.name} created.", "info")
    return redirect(url_for("admin.channels", tenant_id=tenant.id))


@admin.route("/channels/<id:channel_id>/secret", methods=["POST"])
@helpers.tenant_view("admin")
def rotate_channel_secret(tenant, channel_id):
    channel = owned_or_404(Channel, channel_id, tenant, "admin")
    try:
        answer = catalogue.rotate_secret(channel, actor_id=_actor(), keep_previous=not form_bool("stop_old"))
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_channels(tenant, exc.status)
    until = answer["previous_valid_until"]
    old = (f"the old one still verifies until {until.replace('T', ' ').rstrip('Z')} UTC, so the sender can switch"
           if until else "the old one no longer verifies")
    flash(f"New signing secret for {channel.name}: {old}. Copy it now: it is not shown again.", "info")
    return _render_channels(tenant, 200, new_secret=(channel, answer["signing_secret"]))


@admin.route("/channels/<id:channel_id>", methods=["POST"])
@helpers.tenant_view("admin")
def update_channel(tenant, channel_id):
    channel = owned_or_404(Channel, channel_id, tenant, "admin")
    raw_team = request.form.get("team_id")  # absent: unchanged; empty: no team
    team_id = ... if raw_team is None else int(raw_team) if raw_team.isdigit() and len(raw_team) <= 18 else None
    try:
        catalogue.update_channel(channel, shared=form_bool("shared"), is_active=form_bool("is_active"),
                                 team_id=team_id, actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_channels(tenant, exc.status)
    flash(f"Channel {channel.name} saved.", "info")
    return redirect(url_for("admin.channels", tenant_id=tenant.id))


def _render_channel_settings(tenant, channel, status=200, generated=None, result=None):
    return render_template("admin/channel_settings.html", channel=channel, info=channel_admin.describe(channel),
                           kind_label=KIND_LABELS.get(channel.kind, channel.kind), generated=generated or {},
                           result=result), status


@admin.route("/channels/<id:channel_id>/settings")
@helpers.tenant_view("admin")
def channel_settings(tenant, channel_id):
    return _render_channel_settings(tenant, owned_or_404(Channel, channel_id, tenant, "admin"))


@admin.route("/channels/<id:channel_id>/settings", methods=["POST"])
@helpers.tenant_view("admin")
def save_channel_settings(tenant, channel_id):
    channel = owned_or_404(Channel, channel_id, tenant, "admin")
    names = [f["name"] for f in channel_admin.form_fields(channel)]
    values = {name: form_text(name, 2001) for name in names if name in request.form}
    try:
        answer = channel_admin.update(channel, values, actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_channel_settings(tenant, channel, exc.status)
    if answer["missing"]:
        flash("Saved. Still missing: " + ", ".join(answer["missing"]) + ".", "error")
    else:
        flash(f"Settings of {channel.name} saved.", "info")
    # Generated secrets are shown on this one answer only (never stored anywhere readable).
    return _render_channel_settings(tenant, channel, 200, generated=answer["generated_secrets"])


@admin.route("/channels/<id:channel_id>/test", methods=["POST"])
@helpers.tenant_view("admin")
def test_channel(tenant, channel_id):
    channel = owned_or_404(Channel, channel_id, tenant, "admin")
    return _render_channel_settings(tenant, channel, result=channel_admin.test_connection(channel, actor_id=_actor()))


# --- API tokens --------------------------------------------------------------------------

def _render_tokens(tenant, status=200, new_token_value=None, form=None):
    rows = list(ApiToken.select().where(ApiToken.tenant == tenant.id).order_by(ApiToken.id.desc()))
    return render_template("admin/tokens.html", tokens=rows, roles=ROLES, new_token=new_token_value,
                           form=form or {}, now=utcnow()), status


@admin.route("/tokens")
@helpers.tenant_view("admin")
def tokens(tenant):
    return _render_tokens(tenant)


@admin.route("/tokens", methods=["POST"])
@helpers.tenant_view("admin")
def create_token(tenant):
    name = form_text("name", 200).strip()
    role = request.form.get("role", "agent")
    days = form_text("expires_in_days", 10).strip()
    try:
        _row, token = token_service.create_token(
            tenant, name=name, role=role, creator_role=g.role, actor_id=_actor(),
            expires_in_days=int(days) if days.isdigit() else (days or None),
            max_days=int(current_app.extensions["appliance_instance"]["api_token_max_days"]))
    except ServiceError as exc:
        if exc.status == 403:
            abort(403, description=str(exc))
        flash(str(exc), "error")
        return _render_tokens(tenant, exc.status, form={"name": name, "role": role})
    # Rendered, not flashed: a flash would put the secret into the session cookie.
    flash(f"Token {name} created. Copy it now: it is not shown again.", "info")
    return _render_tokens(tenant, 201, new_token_value=token)


@admin.route("/tokens/<id:token_id>/revoke", methods=["POST"])
@helpers.tenant_view("admin")
def revoke_token(tenant, token_id):
    row = token_service.revoke_token(owned_or_404(ApiToken, token_id, tenant, "admin"), actor_id=_actor())
    flash(f"Token {row.name} revoked.", "info")
    return redirect(url_for("admin.tokens", tenant_id=tenant.id))


# --- branding ----------------------------------------------------------------------------

def logo_data_url(upload) -> str:
    """The uploaded logo as a data URL, checked by the validator the API uses too."""
    return logos.data_url(upload.read(logos.MAX_BYTES + 1))


@admin.route("/branding", methods=["GET", "POST"])
@helpers.tenant_view("admin")
def branding(tenant):
    if request.method == "GET":
        return render_template("admin/branding.html", source=lifecycle.branding_of(tenant))
    logo = None
    try:
        upload = request.files.get("logo")
        if form_bool("remove_logo"):
            logo = ""
        elif upload is not None and upload.filename:
            logo = logo_data_url(upload)
        tenants.update_branding(tenant, name=form_text("name", 200), brand_color=request.form.get("brand_color", ""),
                                logo=logo, mask_card_numbers=form_bool("mask_card_numbers"),
                                own_branding=not form_bool("inherit_branding"), actor_id=_actor())
    except ServiceError as exc:
        flash(str(exc), "error")
        tenant = Tenant.get_by_id(tenant.id)  # forget the unsaved changes
        g.tenant = tenant
        return render_template("admin/branding.html", tenant=tenant, source=lifecycle.branding_of(tenant)), exc.status
    flash("Branding saved.", "info")
    return redirect(url_for("admin.branding", tenant_id=tenant.id))
