"""API routes. Every view declares ``@spec`` (role, scope, body), which loads what the URL
names, enforces the role and checks the body before the handler runs, so the handlers,
the OpenAPI document and the isolation tests all read the same rules."""

from __future__ import annotations

from flask import abort, current_app, g, jsonify, request

from appliance.web.access import is_shared_down, require_role, shared_from_ancestors
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import query_int, spec
from appliance.web.models.contact_center import (
    CHANNEL_KINDS,
    DIRECTIONS,
    STATUSES,
    Channel,
    Contact,
    Message,
)
from appliance.web.models.tenancy import (
    ACCOUNT_KINDS,
    ROLES,
    SUBACCOUNT_KINDS,
    ApiToken,
    Membership,
    Tenant,
    User,
    role_rank,
)
from appliance.web.services import (
    canned_text,
    catalogue,
    contacts,
    conversations,
    invitations,
    lifecycle,
    markdown,
    outbox,
    pan,
    routing,
    sessions,
    tenants,
    tokens,
    totp,
    visitors,
)
from appliance.web.validation import F


def _actor():
    return g.principal.user_id


def _page(items, next_cursor=None):
    return jsonify(items=[i.to_json() for i in items], next_cursor=next_cursor)


# --- identity and tenants -------------------------------------------------------------

@api.route("/me")
@spec("The token's tenant, role and reach", tag="tenants", response=R.ME)
def me():
    token = g.token
    tenant = Tenant.get_by_id(token.tenant_id)
    return jsonify(token=token.to_json() | {"effective_role": g.principal.role_in(tenant)}, tenant=tenant.to_json())


ME_PATCH = {"name": F("string", required=True, max_length=120, description="The token's user's display name")}


@api.route("/me", methods=["PATCH"])
@spec("Change the name of the token's user (the creator it acts for)", body=ME_PATCH, tag="tenants", response=R.USER)
def patch_me(data):
    return jsonify(lifecycle.rename_self(User.get_by_id(g.principal.user_id), data["name"]).to_json())


@api.route("/tenants")
@spec("Tenants this token reaches (its tenant and the sub-accounts below)", tag="tenants", response=R.page(R.TENANT))
def list_tenants():
    return _page(g.principal.reachable_tenants().limit(500))


@api.route("/tenants/<id:tenant_id>")
@spec("One tenant", tag="tenants", response=R.TENANT)
def get_tenant(tenant):
    return jsonify(tenant.to_json())


TENANT_PATCH = {
    "name": F("string", max_length=120),
    "brand_color": F("string", max_length=7),
    "logo": F("string", max_length=200_000, nullable=True),
    "mask_card_numbers": F("boolean", description="Show card numbers in messages masked to agents"),
    "own_branding": F("boolean", description="false: show the parent's colour and logo (inherited); "
                      "setting brand_color or logo makes it true"),
}


@api.route("/tenants/<id:tenant_id>", methods=["PATCH"])
@spec("Change a tenant's name and branding", role="admin", body=TENANT_PATCH, tag="tenants", response=R.TENANT)
def patch_tenant(tenant, data):
    return jsonify(tenants.update_branding(tenant, actor_id=_actor(), **data).to_json())


CHILD_BODY = {
    "name": F("string", required=True, max_length=120),
    "kind": F("string", required=True, enum=ACCOUNT_KINDS + SUBACCOUNT_KINDS),
}


@api.route("/tenants/<id:tenant_id>/branding")
@spec("The colour and logo a tenant shows: its own, or inherited from the nearest ancestor with its own",
      tag="tenants", response=R.BRANDING)
def get_branding(tenant):
    source = lifecycle.branding_of(tenant)
    return jsonify(tenant_id=tenant.id, own_branding=source.id == tenant.id, from_tenant_id=source.id,
                   brand_color=source.brand_color, logo=source.logo)


CONFIRM_BODY = {"confirm": F("boolean", required=True, description="Must be true")}


def _confirmed(data) -> None:
    if data["confirm"] is not True:
        abort(422, description="confirm must be true.")


@api.route("/tenants/<id:tenant_id>/deactivate", methods=["POST"])
@spec("Deactivate a tenant and the tenants below it (admins of its parent): members lose access, channels "
      "refuse traffic (410), seats are freed; the data stays, read-only for the admins above",
      role="admin", body=CONFIRM_BODY, tag="tenants", response=R.TENANT)
def deactivate_tenant(tenant, data):
    _confirmed(data)
    return jsonify(lifecycle.deactivate_tenant(g.principal, tenant, actor_id=_actor()).to_json())


@api.route("/tenants/<id:tenant_id>/reactivate", methods=["POST"])
@spec("Reactivate a tenant, with the tenants below that were deactivated with it (admins of its parent)",
      role="admin", body=CONFIRM_BODY, tag="tenants", response=R.TENANT, inactive_writable=True)
def reactivate_tenant(tenant, data):
    _confirmed(data)
    return jsonify(lifecycle.reactivate_tenant(g.principal, tenant, actor_id=_actor()).to_json())


@api.route("/tenants/<id:tenant_id>/children")
@spec("Accounts or sub-accounts directly below a tenant", tag="tenants", response=R.page(R.TENANT))
def list_children(tenant):
    return _page(Tenant.select().where(Tenant.parent == tenant.id).order_by(Tenant.name))


@api.route("/tenants/<id:tenant_id>/children", methods=["POST"])
@spec("Create an account (under the provider) or a sub-account (under an account)",
      role="admin", body=CHILD_BODY, tag="tenants", status=201, response=R.TENANT)
def create_child(tenant, data):
    return jsonify(tenants.create_child(tenant, data["name"], data["kind"], actor_id=_actor()).to_json()), 201


# --- members and tokens ---------------------------------------------------------------

MEMBER_BODY = {
    "email": F("string", required=True, max_length=254),
    "name": F("string", max_length=120),
    "password": F("string", max_length=200, description="Needed when the user is new"),
    "role": F("string", required=True, enum=ROLES),
    "shared": F("boolean", description="Share this agent down to sub-accounts"),
}
MEMBER_PATCH = {
    "role": F("string", enum=ROLES),
    "shared": F("boolean"),
    "available": F("boolean"),
    "takes_conversations": F("boolean", description="Supervisors and admins: take round-robin work too "
                             "(agents always do while available)"),
    "capacity": F("integer", nullable=True, description="Open conversations round-robin gives this member at "
                  f"most (up to {routing.MAX_CAPACITY}); null: the tenant's agent_capacity"),
}


@api.route("/tenants/<id:tenant_id>/members")
@spec("Members of a tenant", role="supervisor", tag="members", response=R.page(R.MEMBER))
def list_members(tenant):
    return _page(Membership.select().where(Membership.tenant == tenant.id).order_by(Membership.id))


@api.route("/tenants/<id:tenant_id>/members", methods=["POST"])
@spec("Add a member by e-mail: a new address gets an account at once, an existing account an invitation "
      "its owner accepts (the answer is the same either way)", role="admin", body=MEMBER_BODY, tag="members",
      status=202, response=R.MEMBER_ADDED)
def add_member(tenant, data):
    answer = invitations.add_by_email(
        tenant, g.principal, email=data["email"], name=data.get("name"), password=data.get("password"),
        role=data["role"], shared=data.get("shared", False), actor_id=_actor(),
    )
    return jsonify(answer), 202


@api.route("/members/<id:member_id>")
@spec("One membership", role="supervisor", tag="members",
      response=R.MEMBER)
def get_member(member):
    return jsonify(member.to_json())


@api.route("/members/<id:member_id>", methods=["PATCH"])
@spec("Change a member's role, sharing, availability, round-robin opt-in or capacity", role="admin",
      body=MEMBER_PATCH, tag="members", response=R.MEMBER)
def patch_member(member, data):
    routed = {key: data.pop(key) for key in ("takes_conversations", "capacity") if key in data}
    if data:
        tenants.update_member(member, actor_id=_actor(), **data)
    if routed:
        routing.set_member_routing(member, actor_id=_actor(), **routed)
    return jsonify(member.to_json())


@api.route("/members/<id:member_id>", methods=["DELETE"])
@spec("Remove a member from a tenant", role="admin", tag="members", response=R.DELETED)
def delete_member(member):
    tenants.remove_member(member, actor_id=_actor())
    return jsonify(deleted=member.id)


TOKEN_BODY = {
    "name": F("string", required=True, max_length=80),
    "role": F("string", required=True, enum=ROLES),
    "expires_in_days": F("integer", description="Days until the token stops working (default: never, "
                         "or the installation's maximum)"),
}


@api.route("/tenants/<id:tenant_id>/tokens")
@spec("API tokens of a tenant (never the secrets)", role="admin", tag="members", response=R.page(R.TOKEN))
def list_tokens(tenant):
    return _page(ApiToken.select().where(ApiToken.tenant == tenant.id).order_by(ApiToken.id))


@api.route("/tenants/<id:tenant_id>/tokens", methods=["POST"])
@spec("Create an API token; the secret is in this answer only", role="admin", body=TOKEN_BODY,
      tag="members", status=201, response=R.NEW_TOKEN)
def create_token(tenant, data):
    row, token = tokens.create_token(tenant, name=data["name"], role=data["role"],
                                     creator_role=g.principal.role_in(tenant), actor_id=_actor(),
                                     expires_in_days=data.get("expires_in_days"),
                                     max_days=int(current_app.extensions["appliance_instance"]["api_token_max_days"]),
                                     parent=g.token)
    return jsonify(row.to_json() | {"token": token}), 201


@api.route("/tokens/<id:token_id>", methods=["DELETE"])
@spec("Revoke an API token", role="admin", tag="members", response=R.TOKEN)
def revoke_token(token):
    return jsonify(tokens.revoke_token(token, actor_id=_actor()).to_json())


@api.route("/members/<id:member_id>/sessions", methods=["DELETE"])
@spec("Sign a member's user out of every UI session (needs admin of every tenant they belong to)",
      role="admin", tag="members", response=R.DONE)
def end_member_sessions(member):
    count = sessions.kill_user_sessions(g.principal, member.user_id, actor_id=_actor())
    return jsonify(ended=count)


@api.route("/members/<id:member_id>/totp", methods=["DELETE"])
@spec("Reset a member's TOTP enrolment (a lost phone); they enrol again at their next login",
      role="admin", scope="provider", tag="members", response=R.DONE)
def reset_member_totp(member):
    totp.reset(User.get_by_id(member.user_id), actor_id=_actor())
    sessions.end_all(member.user_id, actor_id=_actor(), reason="totp-reset")
    return jsonify(reset=member.user_id)


@api.route("/members/<id:member_id>/deactivate", methods=["POST"])
@spec("Deactivate a member's user everywhere (needs admin of every tenant they belong to): their sessions "
      "and API tokens stop at once", role="admin", body=CONFIRM_BODY, tag="members", response=R.USER)
def deactivate_member_user(member, data):
    return _set_member_active(member, data, False)


@api.route("/members/<id:member_id>/reactivate", methods=["POST"])
@spec("Reactivate a member's user (needs admin of every tenant they belong to)", role="admin",
      body=CONFIRM_BODY, tag="members", response=R.USER)
def reactivate_member_user(member, data):
    return _set_member_active(member, data, True)


def _set_member_active(member, data, active: bool):
    _confirmed(data)
    user = User.get_by_id(member.user_id)
    return jsonify(lifecycle.set_user_active(g.principal, user, active, actor_id=_actor()).to_json())


@api.route("/members/<id:member_id>/password-reset", methods=["POST"])
@spec("Make a one-time link for a member's user to set a new password (needs admin of every tenant they "
      "belong to): e-mailed through the site's relay when notify_mail is set (the answer then holds no link), "
      "else in this answer for the admin to hand over", role="admin", body=CONFIRM_BODY, tag="members",
      status=201, response=R.PASSWORD_RESET)
def member_password_reset(member, data):
    _confirmed(data)
    settings = current_app.extensions["appliance_instance"].settings
    return jsonify(lifecycle.create_reset(g.principal, User.get_by_id(member.user_id), settings, request.host_url,
                                          actor_id=_actor())), 201


# --- channels and teams ----------------------------------------------------------------

CHANNEL_BODY = {
    "kind": F("string", required=True, enum=CHANNEL_KINDS),
    "name": F("string", required=True, max_length=80),
    "shared": F("boolean"),
    "team_id": F("integer", nullable=True),
}
CHANNEL_PATCH = {
    "name": F("string", max_length=80),
    "shared": F("boolean"),
    "is_active": F("boolean"),
    "team_id": F("integer", nullable=True),
}


@api.route("/tenants/<id:tenant_id>/channels")
@spec("Channels of a tenant, and those its parents share down", tag="channels", response=R.page(R.CHANNEL))
def list_channels(tenant):
    own = list(Channel.select().where(Channel.tenant == tenant.id).order_by(Channel.id))
    return _page(own + list(shared_from_ancestors(Channel, tenant)))


@api.route("/tenants/<id:tenant_id>/channels", methods=["POST"])
@spec("Create a channel (webhook and web-chat channels: with their signing secret, in this answer only)",
      role="admin", body=CHANNEL_BODY, tag="channels", status=201, response=R.NEW_CHANNEL)
def create_channel(tenant, data):
    channel = catalogue.create_channel(tenant, actor_id=_actor(), **data)
    secret = {"signing_secret": channel.secret} if channel.kind in catalogue.SIGNED_KINDS else {}
    return jsonify(channel.to_json() | secret), 201


@api.route("/channels/<id:channel_id>")
@spec("One channel (shared channels of a parent can be read)", tag="channels", shared_read=True, response=R.CHANNEL)
def get_channel(channel):
    return jsonify(channel.to_json())


@api.route("/channels/<id:channel_id>", methods=["PATCH"])
@spec("Change a channel", role="admin", body=CHANNEL_PATCH, tag="channels", response=R.CHANNEL)
def patch_channel(channel, data):
    if "team_id" not in data:
        data["team_id"] = ...
    return jsonify(catalogue.update_channel(channel, actor_id=_actor(), **data).to_json())


TEAM_MEMBERS = F("array", max_length=500, description="User ids of the team's members (integers): people who "
                 "may take the tenant's conversations")
TEAM_BODY = {"name": F("string", required=True, max_length=80), "member_ids": TEAM_MEMBERS}
TEAM_PATCH = {"name": F("string", max_length=80),
              "member_ids": F("array", max_length=500, description="The team's members afterwards, exactly")}


def _user_ids(value) -> list[int]:
    if any(isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 2**62 for v in value):
        abort(422, description="member_ids must be a list of user ids (positive integers).")
    return value


def _teams_page(teams):
    members = routing.member_ids(teams)
    return jsonify(items=[routing.team_json(t, members[t.id]) for t in teams], next_cursor=None)


@api.route("/tenants/<id:tenant_id>/teams")
@spec("Teams of a tenant, with their members' user ids", tag="channels", response=R.page(R.TEAM))
def list_teams(tenant):
    return _teams_page(routing.teams_of(tenant))


@api.route("/tenants/<id:tenant_id>/teams", methods=["POST"])
@spec("Create a team (conversations of a channel with a team go round-robin to its members)", role="admin",
      body=TEAM_BODY, tag="channels", status=201, response=R.TEAM)
def create_team(tenant, data):
    team = routing.create_team(tenant, data["name"], _user_ids(data.get("member_ids") or []), actor_id=_actor())
    return jsonify(routing.team_json(team)), 201


@api.route("/teams/<id:team_id>")
@spec("One team, with its members' user ids", tag="channels", response=R.TEAM)
def get_team(team):
    return jsonify(routing.team_json(team))


@api.route("/teams/<id:team_id>", methods=["PATCH"])
@spec("Rename a team or set its members", role="admin", body=TEAM_PATCH, tag="channels", response=R.TEAM)
def patch_team(team, data):
    if "name" in data:
        routing.rename_team(team, data["name"], actor_id=_actor())
    if "member_ids" in data:
        routing.set_members(team, _user_ids(data["member_ids"]), actor_id=_actor())
    return jsonify(routing.team_json(team))


@api.route("/teams/<id:team_id>", methods=["DELETE"])
@spec("Delete a team (its channels and conversations go on without one)", role="admin", tag="channels",
      response=R.DELETED)
def delete_team(team):
    routing.delete_team(team, actor_id=_actor())
    return jsonify(deleted=team.id)


ROUTING_PATCH = {"agent_capacity": F("integer", nullable=True, description="Open conversations round-robin gives "
                                     f"each member at most (up to {routing.MAX_CAPACITY}; a member's own capacity "
                                     "wins); null: no limit")}


@api.route("/tenants/<id:tenant_id>/routing")
@spec("A tenant's round-robin settings", role="supervisor", tag="channels", response=R.ROUTING)
def get_routing(tenant):
    return jsonify(tenant_id=tenant.id, agent_capacity=tenant.agent_capacity)


@api.route("/tenants/<id:tenant_id>/routing", methods=["PATCH"])
@spec("Change a tenant's round-robin settings", role="admin", body=ROUTING_PATCH, tag="channels",
      response=R.ROUTING)
def patch_routing(tenant, data):
    if "agent_capacity" in data:
        routing.set_tenant_capacity(tenant, data["agent_capacity"], actor_id=_actor())
    return jsonify(tenant_id=tenant.id, agent_capacity=tenant.agent_capacity)


# --- contacts --------------------------------------------------------------------------

CONTACT_BODY = {
    "name": F("string", max_length=200, nullable=True),
    "email": F("string", max_length=254, nullable=True),
    "phone": F("string", max_length=40, nullable=True),
    "notes": F("string", max_length=5000, nullable=True),
}
CONTACT_QUERY = {"email": F("string"), "phone": F("string"), "limit": F("integer"), "after": F("integer")}


@api.route("/tenants/<id:tenant_id>/contacts")
@spec("Contacts; exact-match search with ?email= or ?phone=", query=CONTACT_QUERY, tag="contacts",
      response=R.page(R.CONTACT))
def list_contacts(tenant):
    email, phone = request.args.get("email"), request.args.get("phone")
    query = contacts.find_contacts(tenant, email=email, phone=phone)
    after = query_int("after", 0, 0, 2**62)
    if after:
        query = query.where(Contact.id < after)
    rows = list(query.limit(query_int("limit", 50)))
    return _page(rows, str(rows[-1].id) if rows else None)


@api.route("/tenants/<id:tenant_id>/contacts", methods=["POST"])
@spec("Create a contact", body=CONTACT_BODY, tag="contacts", status=201, response=R.CONTACT)
def create_contact(tenant, data):
    return jsonify(contacts.create_contact(tenant, **data).to_json()), 201


@api.route("/contacts/<id:contact_id>")
@spec("One contact", tag="contacts", response=R.CONTACT)
def get_contact(contact):
    return jsonify(contact.to_json())


@api.route("/contacts/<id:contact_id>", methods=["PATCH"])
@spec("Change a contact", body=CONTACT_BODY, tag="contacts", response=R.CONTACT)
def patch_contact(contact, data):
    return jsonify(contacts.update_contact(contact, **data).to_json())


MERGE_BODY = {"into": F("integer", required=True, description="The contact the visitor turned out to be")}


@api.route("/contacts/<id:contact_id>/merge", methods=["POST"])
@spec("Merge an unverified visitor contact into the contact it turned out to be", body=MERGE_BODY,
      tag="contacts", response=R.CONTACT)
def merge_contact(contact, data):
    target = Contact.get_or_none(Contact.id == data["into"], Contact.tenant == contact.tenant_id)
    if target is None:
        abort(422, description="into is not a contact of this contact's tenant.")
    return jsonify(visitors.merge(contact, target, actor_id=_actor()).to_json())


# --- conversations and messages ---------------------------------------------------------

CONVERSATION_BODY = {
    "channel_id": F("integer", required=True),
    "contact_id": F("integer", required=True),
    "body": F("string", required=True, max_length=20_000),
    "direction": F("string", enum=("in", "out")),
    "subject": F("string", max_length=200, nullable=True),
}
CONVERSATION_PATCH = {
    "status": F("string", enum=STATUSES),
    "priority": F("string", enum=conversations.PRIORITIES),
    "assignee_id": F("integer", nullable=True, description="Someone who may take the tenant's conversations "
                     "(GET .../assignees); null: back to the queue"),
    "team_id": F("integer", nullable=True, description="A team of the tenant; without assignee_id, round-robin "
                 "among its members now (nobody free: it waits for them)"),
}
INBOX_QUERY = {
    "status": F("string", enum=STATUSES),
    "assignee": F("string", description="me, unassigned or a user id"),
    "channel_id": F("integer"),
    "team_id": F("integer"),
    "include_subaccounts": F("boolean"),
    "cursor": F("string"),
    "limit": F("integer"),
}
MESSAGE_BODY = {
    "body": F("string", required=True, max_length=20_000),
    "direction": F("string", enum=DIRECTIONS),
}


@api.route("/tenants/<id:tenant_id>/conversations")
@spec("The inbox: newest first, filtered, keyset-paginated with next_cursor", query=INBOX_QUERY,
      tag="conversations", response=R.page(R.CONVERSATION))
def list_conversations(tenant):
    rows, cursor = conversations.inbox(
        tenant,
        status=request.args.get("status"),
        assignee=request.args.get("assignee"),
        channel_id=query_int("channel_id", 0, 0, 2**62) or None,
        team_id=query_int("team_id", 0, 0, 2**62) or None,
        include_subaccounts=request.args.get("include_subaccounts") in ("1", "true"),
        cursor=request.args.get("cursor"),
        limit=query_int("limit", conversations.PAGE_SIZE),
        viewer_id=g.principal.user_id,
    )
    return _page(rows, cursor)


@api.route("/tenants/<id:tenant_id>/conversations", methods=["POST"])
@spec("Start a conversation with a contact on a channel", body=CONVERSATION_BODY,
      tag="conversations", status=201, response=R.CONVERSATION)
def create_conversation(tenant, data):
    contact = Contact.get_or_none(Contact.id == data["contact_id"], Contact.tenant == tenant.id)
    if contact is None:
        abort(422, description="contact_id is not a contact of this tenant.")
    channel = Channel.get_or_none(Channel.id == data["channel_id"])
    usable = channel is not None and (
        channel.tenant_id == tenant.id
        or is_shared_down(channel, tenant)
    )
    if not usable:
        abort(422, description="channel_id is not a channel of this tenant or shared with it.")
    conv = conversations.start_conversation(
        channel, tenant, contact, data["body"], direction=data.get("direction", "out"),
        author=_actor() if data.get("direction", "out") == "out" else None, subject=data.get("subject"),
    )
    return jsonify(conv.to_json()), 201


@api.route("/conversations/<id:conversation_id>")
@spec("One conversation", tag="conversations", response=R.CONVERSATION)
def get_conversation(conversation):
    return jsonify(conversation.to_json())


@api.route("/conversations/<id:conversation_id>", methods=["PATCH"])
@spec("Change status, assignee or team (audited)", body=CONVERSATION_PATCH, tag="conversations",
      response=R.CONVERSATION)
def patch_conversation(conversation, data):
    if "assignee_id" in data or "team_id" in data:
        tenant = Tenant.get_by_id(conversation.tenant_id)
        wanted = data.get("assignee_id", conversation.assignee_id)
        # Agents take work or hand back their own; moving anyone else's is a supervisor's job.
        reassigning_other = (
            wanted not in (None, g.principal.user_id)
            or conversation.assignee_id not in (None, g.principal.user_id)
            or "team_id" in data
        )
        if reassigning_other:
            require_role(g.principal, tenant, "supervisor")
        conversations.assign(
            conversation, data.get("assignee_id", conversation.assignee_id), data.get("team_id"),
            set_team="team_id" in data, route="team_id" in data and "assignee_id" not in data,
            actor_id=_actor(), via="api",
        )
    if "status" in data:
        conversations.set_status(conversation, data["status"])
    if "priority" in data:
        conversations.set_priority(conversation, data["priority"])
    return jsonify(conversation.to_json())


@api.route("/conversations/<id:conversation_id>/assignees")
@spec("Who this conversation can be assigned to: people (with presence and open load) and the tenant's teams",
      tag="conversations", response=R.ASSIGNEES)
def conversation_assignees(conversation):
    tenant = Tenant.get_by_id(conversation.tenant_id)
    return jsonify(conversation_id=conversation.id, assignee_id=conversation.assignee_id,
                   team_id=conversation.team_id, people=routing.assignees(tenant),
                   teams=[{"id": t.id, "name": t.name} for t in routing.teams_of(tenant)])


@api.route("/conversations/<id:conversation_id>/messages")
@spec("Messages of a conversation, oldest first; card numbers masked where the tenant masks them "
      "(?unmasked=true: the full text, for pan_reveal_role and above, audited); a reply on its way to a "
      "channel has delivery {state, attempts, reason, receipt (delivered|read|failed|null), receipt_at}",
      query={"after": F("integer"), "limit": F("integer"), "unmasked": F("boolean")},
      tag="conversations", response=R.page(R.MESSAGE))
def list_messages(conversation):
    after = query_int("after", 0, 0, 2**62)
    rows = list(
        Message.select().where(Message.conversation == conversation.id, Message.id > after)
        .order_by(Message.id).limit(query_int("limit", 100, 1, 500))
    )
    items = [m.to_json() for m in rows]
    deliveries = outbox.deliveries(m.id for m in rows if m.direction == "out")
    for item in items:
        if item["id"] in deliveries:
            d = deliveries[item["id"]]
            item["delivery"] = {**d, "receipt_at": d["receipt_at"].isoformat() + "Z" if d["receipt_at"] else None}
    tenant = Tenant.get_by_id(conversation.tenant_id)
    if pan.masking_on(tenant):
        if request.args.get("unmasked") in ("true", "1"):
            if not pan.may_reveal(g.principal.role_in(tenant), current_app.extensions["appliance_instance"]
                                  ["pan_reveal_role"]):
                abort(403, description="Your role may not see full card numbers (setting pan_reveal_role).")
            pan.audit_reveal(actor_id=_actor(), tenant_id=tenant.id, conversation_id=conversation.id,
                             messages=len(items))
        else:
            for item in items:
                item["body"] = pan.mask(item["body"])
    return jsonify(items=items, next_cursor=str(rows[-1].id) if rows else None)


@api.route("/conversations/<id:conversation_id>/messages", methods=["POST"])
@spec("Reply (out), add an internal note, or record an inbound message", body=MESSAGE_BODY,
      tag="conversations", status=201, response=R.MESSAGE)
def create_message(conversation, data):
    direction = data.get("direction", "out")
    author = _actor() if direction != "in" else None
    msg = conversations.add_message(conversation, direction, data["body"], author=author)
    return jsonify(msg.to_json()), 201


# --- canned answers and knowledge base ---------------------------------------------------

CANNED_BODY = {
    "shortcut": F("string", required=True, max_length=40),
    "title": F("string", required=True, max_length=120),
    "body": F("string", required=True, max_length=5000,
              description="Text; {{contact.name}}, {{agent.name}} and the other variables listed on the "
                          "canned-answers page are filled in when inserted into a reply"),
    "shared": F("boolean", description="Offer it to the sub-accounts below (read-only there)"),
}
CANNED_PATCH = {k: F(f.type, max_length=f.max_length) for k, f in CANNED_BODY.items()}
ARTICLE_BODY = {
    "title": F("string", required=True, max_length=200),
    "body": F("string", required=True, max_length=50_000, description="Markdown (raw HTML is shown as text)"),
    "category": F("string", max_length=60),
    "shared": F("boolean"),
    "published": F("boolean"),
}
ARTICLE_PATCH = {k: F(f.type, max_length=f.max_length) for k, f in ARTICLE_BODY.items()}
ARTICLE_QUERY = {"q": F("string", description="Words in the title or text"), "category": F("string")}


@api.route("/tenants/<id:tenant_id>/canned-answers")
@spec("Canned answers of a tenant and those its parents share down (an own shortcut hides a parent's)",
      tag="knowledge", response=R.page(R.CANNED))
def list_canned(tenant):
    return _page(catalogue.usable_canned(tenant))


@api.route("/tenants/<id:tenant_id>/canned-answers", methods=["POST"])
@spec("Create a canned answer", role="supervisor", body=CANNED_BODY, tag="knowledge", status=201, response=R.CANNED)
def create_canned(tenant, data):
    return jsonify(catalogue.create_canned(tenant, actor_id=_actor(), **data).to_json()), 201


@api.route("/canned-answers/<id:canned_id>", methods=["PATCH"])
@spec("Change a canned answer (its owner only: shared ones are read-only below)", role="supervisor",
      body=CANNED_PATCH, tag="knowledge", response=R.CANNED)
def patch_canned(canned, data):
    return jsonify(catalogue.update_canned(canned, actor_id=_actor(), **data).to_json())


@api.route("/canned-answers/<id:canned_id>", methods=["DELETE"])
@spec("Delete a canned answer", role="supervisor", tag="knowledge", response=R.DELETED)
def delete_canned(canned):
    catalogue.delete_canned(canned, actor_id=_actor())
    return jsonify(deleted=canned.id)


@api.route("/conversations/<id:conversation_id>/canned-answers")
@spec("The canned answers usable in this conversation, each with `text`: its body with the variables "
      "filled for this conversation's contact and the token's user", tag="knowledge",
      response=R.page(R.CANNED_FILLED))
def conversation_canned(conversation):
    tenant = Tenant.get_by_id(conversation.tenant_id)
    values = canned_text.values_for(contact=Contact.get_by_id(conversation.contact_id),
                                    agent=User.get_by_id(g.principal.user_id), tenant=tenant)
    items = [a.to_json() | {"text": canned_text.fill(a.body, values)} for a in catalogue.usable_canned(tenant)]
    return jsonify(items=items, next_cursor=None)


@api.route("/tenants/<id:tenant_id>/articles")
@spec("Knowledge-base articles of a tenant and those its parents share down; ?q= searches titles and "
      "text, ?category= filters (drafts for supervisors and above only)", query=ARTICLE_QUERY, tag="knowledge",
      response=R.page(R.ARTICLE))
def list_articles(tenant):
    drafts = role_rank(g.principal.role_in(tenant)) >= role_rank("supervisor")
    category = request.args.get("category")
    return _page(catalogue.visible_articles(tenant, drafts=drafts, query=request.args.get("q"),
                                            category=category[:60] if category else None))


@api.route("/articles/<id:article_id>/html")
@spec("An article's text rendered from Markdown to sanitised HTML", tag="knowledge", shared_read=True,
      response=R.ARTICLE_HTML)
def get_article_html(article):
    return jsonify(id=article.id, html=markdown.render(article.body))


@api.route("/tenants/<id:tenant_id>/articles", methods=["POST"])
@spec("Create an article", role="supervisor", body=ARTICLE_BODY, tag="knowledge", status=201, response=R.ARTICLE)
def create_article(tenant, data):
    return jsonify(catalogue.create_article(tenant, actor_id=_actor(), **data).to_json()), 201


@api.route("/articles/<id:article_id>")
@spec("One article (shared articles of a parent can be read)", tag="knowledge", shared_read=True, response=R.ARTICLE)
def get_article(article):
    return jsonify(article.to_json())


@api.route("/articles/<id:article_id>", methods=["PATCH"])
@spec("Change an article", role="supervisor", body=ARTICLE_PATCH, tag="knowledge", response=R.ARTICLE)
def patch_article(article, data):
    return jsonify(catalogue.update_article(article, actor_id=_actor(), **data).to_json())


@api.route("/articles/<id:article_id>", methods=["DELETE"])
@spec("Delete an article", role="supervisor", tag="knowledge", response=R.DELETED)
def delete_article(article):
    catalogue.delete_article(article, actor_id=_actor())
    return jsonify(deleted=article.id)
