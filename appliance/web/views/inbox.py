"""The operator's daily work: inbox, conversation view with reply, contacts."""

from __future__ import annotations

import datetime as dt

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

from appliance.web.access import require_role, shared_from_ancestors
from appliance.web.models.contact_center import (
    PRIORITIES,
    STATUSES,
    Channel,
    Contact,
    Conversation,
    Label,
    Message,
    Team,
)
from appliance.web.models.tenancy import Tenant, User
from appliance.web.services import (
    ServiceError,
    attachments,
    canned_text,
    catalogue,
    contacts,
    conversations,
    labels,
    outbox,
    pan,
    routing,
    visitors,
)
from appliance.web.views import helpers
from appliance.web.views.helpers import arg_id, form_text, owned_or_404

inbox = Blueprint("inbox", __name__)
helpers.install(inbox)

ASSIGNEE_FILTERS = ("all", "me", "unassigned")
MESSAGES_SHOWN = 200
CONTACTS_PAGE = 50


def _by_id(model, ids) -> dict:
    """One query for every row a page refers to (no N+1 over the table)."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return {row.id: row for row in model.select().where(model.id.in_(ids))}


def _status_counts(tenant: Tenant, include_sub: bool) -> dict:
    return {s: conversations.count_label(n)
            for s, n in conversations.status_counts(tenant, include_subaccounts=include_sub).items()}


def _filter_channels(tenant: Tenant, include_sub: bool) -> list:
    if include_sub:
        own = Channel.select().join(Tenant).where(Tenant.path.startswith(tenant.path))
    else:
        own = Channel.select().where(Channel.tenant == tenant.id)
    return list(own.order_by(Channel.name)) + list(shared_from_ancestors(Channel, tenant).order_by(Channel.name))


@inbox.route("/t/<id:tenant_id>/inbox")
@helpers.tenant_view("agent")
def index(tenant):
    status = request.args.get("status", "open")
    if status not in (*STATUSES, "all"):
        status = "open"
    assignee = request.args.get("assignee", "all")
    if assignee not in ASSIGNEE_FILTERS:
        assignee = "all"
    channel_id = arg_id("channel")
    include_sub = request.args.get("sub") == "1"
    cursor = request.args.get("cursor") or None
    label_choices = labels.usable_labels(tenant)
    label_id = arg_id("label")
    if label_id not in {lb.id for lb in label_choices}:
        label_id = None
    priority = request.args.get("priority", "")
    if priority not in PRIORITIES:
        priority = ""
    sort = request.args.get("sort", "newest")
    if sort not in conversations.SORTS:
        sort = "newest"
    q = (request.args.get("q") or "").strip()[:254]
    scope = _subtree(tenant) if include_sub else [tenant]
    try:
        rows, next_cursor = conversations.inbox(
            tenant,
            status=None if status == "all" else status,
            assignee=None if assignee == "all" else assignee,
            channel_id=channel_id,
            include_subaccounts=include_sub,
            cursor=cursor,
            viewer_id=g.principal.user_id,
            label_id=label_id,
            priority=priority or None,
            contact_ids=contacts.search(scope, q) if q else None,
            sort=sort,
        )
    except ServiceError as exc:
        flash(str(exc), "error")
        rows, next_cursor, cursor = [], None, None
    contact_map = _by_id(Contact, (r.contact_id for r in rows))
    channel_map = _by_id(Channel, (r.channel_id for r in rows))
    user_map = _by_id(User, (r.assignee_id for r in rows))
    tenant_map = _by_id(Tenant, (r.tenant_id for r in rows)) if include_sub else {tenant.id: tenant}
    filters = {"status": status, "assignee": assignee, "channel": channel_id or "", "sub": "1" if include_sub else "",
               "label": label_id or "", "priority": priority, "sort": sort, "q": q}
    return render_template(
        "inbox/index.html",
        rows=rows,
        contacts=contact_map,
        channels=channel_map,
        users=user_map,
        tenants=tenant_map,
        counts=_status_counts(tenant, include_sub),
        filters=filters,
        channel_choices=_filter_channels(tenant, include_sub),
        has_children=Tenant.select().where(Tenant.parent == tenant.id).exists(),
        next_cursor=next_cursor,
        paged=bool(cursor),
        statuses=STATUSES,
        priorities=PRIORITIES,
        label_choices=label_choices,
        row_labels=labels.of_conversations(r.id for r in rows),
        unread=conversations.unread_among(g.principal.user_id, rows),
        previews=_previews(tenant_map, rows),
    )


def _subtree(tenant: Tenant) -> list[Tenant]:
    return list(Tenant.select().where(Tenant.path.startswith(tenant.path)).order_by(Tenant.path)
                .limit(contacts.SEARCH_TENANTS))


def _previews(tenant_map: dict, rows) -> dict:
    """conversation id -> its preview as this viewer may read it (card numbers masked where asked)."""
    out = {}
    masking = {tid: pan.masking_on(t) for tid, t in tenant_map.items()}
    for r in rows:
        text = r.preview
        if text:
            out[r.id] = pan.mask(text) if masking.get(r.tenant_id) else text
    return out


def _conversation(tenant, conversation_id) -> Conversation:
    return owned_or_404(Conversation, conversation_id, tenant)


def _render_conversation(tenant, conv, status=200, draft="", draft_kind="out"):
    # The newest page of the thread; ?before=<message id> walks back through long ones.
    query = Message.select().where(Message.conversation == conv.id)
    before = arg_id("before")
    if before:
        query = query.where(Message.id < before)
    recent = list(query.order_by(Message.id.desc()).limit(MESSAGES_SHOWN + 1))
    earlier = recent[MESSAGES_SHOWN - 1].id if len(recent) > MESSAGES_SHOWN else None
    recent = recent[:MESSAGES_SHOWN]
    recent.reverse()
    authors = _by_id(User, [m.author_id for m in recent] + [conv.assignee_id])
    bodies, can_reveal = _visible_bodies(tenant, conv, recent)
    if not before and status == 200 and request.method == "GET":
        conversations.mark_read(g.principal.user_id, conv)  # opening it reads it
    # Supervisors assign anyone eligible or a team; agents take it or give back their own.
    people = routing.assignees(tenant) if helpers.can("supervisor") else []
    teams = routing.teams_of(tenant) if helpers.can("supervisor") else []
    return render_template(
        "inbox/conversation.html",
        conv=conv,
        messages=recent,
        earlier=earlier,
        paged=bool(before),
        authors=authors,
        files=attachments.metadata_for(m.id for m in recent),
        deliveries=outbox.deliveries(m.id for m in recent if m.direction == "out"),
        contact=Contact.get_by_id(conv.contact_id),
        channel=Channel.get_by_id(conv.channel_id),
        canned=_canned_filled(tenant, conv),
        people=people,
        teams=teams,
        team=Team.get_or_none(Team.id == conv.team_id) if conv.team_id else None,
        statuses=STATUSES,
        draft=draft,
        draft_kind=draft_kind,
        bodies=bodies,
        can_reveal=can_reveal,
        conv_labels=labels.of_conversations([conv.id]).get(conv.id, []),
        label_choices=labels.usable_labels(tenant),
        priorities=PRIORITIES,
        snooze_choices=_snooze_choices(),
        next_conv=conversations.next_in_inbox(conv),
    ), status


def _canned_filled(tenant, conv) -> list[tuple]:
    """(answer, text with its variables filled for this contact and this agent) for the reply box."""
    values = canned_text.values_for(contact=Contact.get_by_id(conv.contact_id), agent=g.user, tenant=tenant)
    return [(a, canned_text.fill(a.body, values)) for a in catalogue.usable_canned(tenant)]


def _visible_bodies(tenant, conv, messages) -> tuple[dict, bool]:
    """Message bodies as this viewer may see them: card numbers masked where the tenant asks.

    ``?reveal=1`` shows them in full to ``pan_reveal_role`` and above, and is audited.
    """
    if not pan.masking_on(tenant):
        return {}, False
    allowed = pan.may_reveal(g.role, current_app.extensions["appliance_instance"]["pan_reveal_role"])
    if allowed and request.args.get("reveal") == "1":
        pan.audit_reveal(actor_id=g.principal.user_id, tenant_id=tenant.id, conversation_id=conv.id,
                         messages=len(messages))
        return {}, False
    return {m.id: pan.mask(m.body) for m in messages}, allowed


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>")
@helpers.tenant_view("agent")
def conversation(tenant, conversation_id):
    return _render_conversation(tenant, _conversation(tenant, conversation_id))


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/reply", methods=["POST"])
@attachments.accepts_uploads
@helpers.tenant_view("agent")
def reply(tenant, conversation_id):
    conv = _conversation(tenant, conversation_id)
    kind = request.form.get("kind", "out")
    body = form_text("body", conversations.MAX_BODY + 1)
    if kind not in ("out", "note"):
        kind = "out"
    uploads = [attachments.from_form(f) for f in request.files.getlist("files") if f and f.filename]
    try:
        attachments.add_message_with_files(conv, kind, body, uploads, author=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status, draft=body, draft_kind=kind)
    flash("Note added." if kind == "note" else "Reply sent.", "info")
    return redirect(url_for("inbox.conversation", tenant_id=tenant.id, conversation_id=conv.id) + "#latest")


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/messages/<id:message_id>/retry",
             methods=["POST"])
@helpers.tenant_view("agent")
def retry_delivery(tenant, conversation_id, message_id):
    conv = _conversation(tenant, conversation_id)
    message = Message.get_or_none(Message.id == message_id, Message.conversation == conv.id)
    if message is None:
        abort(404)
    try:
        outbox.retry(message, actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    flash("The reply will be sent again.", "info")
    return redirect(url_for("inbox.conversation", tenant_id=tenant.id, conversation_id=conv.id) + "#latest")


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/status", methods=["POST"])
@helpers.tenant_view("agent")
def set_status(tenant, conversation_id):
    conv = _conversation(tenant, conversation_id)
    try:
        conversations.set_status(conv, request.form.get("status", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    flash(f"Status set to {conv.status}.", "info")
    return redirect(url_for("inbox.conversation", tenant_id=tenant.id, conversation_id=conv.id))


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/assign", methods=["POST"])
@helpers.tenant_view("agent")
def assign(tenant, conversation_id):
    """Agents take a conversation or give back their own; supervisors assign anyone eligible,
    or a team (round-robin among its members, else it waits for them)."""
    conv = _conversation(tenant, conversation_id)
    me = g.principal.user_id
    choice = request.form.get("assignee", "")
    team_id = None
    if choice == "me":
        target = me
    elif choice == "none":
        target = None
    elif choice.isdigit() and len(choice) <= 18:
        target = int(choice)
    elif choice.startswith("team-") and choice[5:].isdigit() and len(choice) <= 23:
        target, team_id = None, int(choice[5:])
    else:
        abort(400, description="assignee: pick someone or a team to assign the conversation to.")
    touches_other = (team_id is not None or target not in (None, me)
                     or (target is None and conv.assignee_id not in (None, me)))
    if touches_other:
        require_role(g.principal, tenant, "supervisor")
    try:
        conversations.assign(conv, target, team_id, set_team=team_id is not None, route=team_id is not None,
                             actor_id=me, via="inbox")
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    if team_id is not None:
        flash("Sent to the team: " + ("assigned." if conv.assignee_id else "waiting for a member who can take it."),
              "info")
    else:
        flash("Assigned." if target is not None else "Unassigned: waiting in the queue." if conv.waiting_since
              else "Unassigned.", "info")
    return redirect(url_for("inbox.conversation", tenant_id=tenant.id, conversation_id=conv.id))


# --- contacts ----------------------------------------------------------------------------

@inbox.route("/t/<id:tenant_id>/contacts")
@helpers.tenant_view("agent")
def contact_list(tenant):
    q = (request.args.get("q") or "").strip()[:254]
    if "@" in q:
        query = contacts.find_contacts(tenant, email=q)
    elif q:
        query = contacts.find_contacts(tenant, phone=q)
    else:
        query = contacts.find_contacts(tenant)
    after = arg_id("after")
    if after:
        query = query.where(Contact.id < after)
    rows = list(query.limit(CONTACTS_PAGE + 1))
    more = len(rows) > CONTACTS_PAGE
    rows = rows[:CONTACTS_PAGE]
    return render_template("inbox/contacts.html", rows=rows, q=q, after=after,
                           next_after=rows[-1].id if more else None)


def _render_contact(tenant, contact, status=200):
    convs = list(
        Conversation.select().where(Conversation.contact == contact.id)
        .order_by(Conversation.last_message_at.desc()).limit(50)
    )
    channel_map = _by_id(Channel, (c.channel_id for c in convs))
    return render_template("inbox/contact.html", contact=contact, convs=convs, channels=channel_map), status


@inbox.route("/t/<id:tenant_id>/contacts/<id:contact_id>")
@helpers.tenant_view("agent")
def contact(tenant, contact_id):
    return _render_contact(tenant, owned_or_404(Contact, contact_id, tenant))


@inbox.route("/t/<id:tenant_id>/contacts/<id:contact_id>/merge", methods=["POST"])
@helpers.tenant_view("agent")
def contact_merge(tenant, contact_id):
    """An agent who has checked a visitor's identity moves them onto the real contact."""
    source = owned_or_404(Contact, contact_id, tenant)
    raw = (request.form.get("into") or "").strip().lstrip("#")
    target_id = int(raw) if raw.isdigit() and len(raw) <= 18 else None
    target = Contact.get_or_none(Contact.id == target_id, Contact.tenant == tenant.id) if target_id else None
    if target is None:
        flash("Give the id of a contact of this organisation to merge into.", "error")
        return _render_contact(tenant, source, 422)
    try:
        visitors.merge(source, target, actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_contact(tenant, source, exc.status)
    flash("Visitor merged into this contact.", "info")
    return redirect(url_for("inbox.contact", tenant_id=tenant.id, contact_id=target.id))


@inbox.route("/t/<id:tenant_id>/contacts/<id:contact_id>", methods=["POST"])
@helpers.tenant_view("agent")
def contact_update(tenant, contact_id):
    contact = owned_or_404(Contact, contact_id, tenant)
    fields = {key: form_text(key, contacts.LIMITS[key] + 1) for key in ("name", "email", "phone", "notes")}
    try:
        contacts.update_contact(contact, **fields)
    except ServiceError as exc:
        flash(str(exc), "error")
        for key, value in fields.items():
            setattr(contact, key, value)
        return _render_contact(tenant, contact, exc.status)
    flash("Contact saved.", "info")
    return redirect(url_for("inbox.contact", tenant_id=tenant.id, contact_id=contact.id))


# --- the inbox agents work in: snooze, priority, labels, read markers ------------------

def _snooze_choices() -> list[tuple[str, str]]:
    """(value, label) for the snooze menu, in the installation's local time."""
    from appliance.core import clock

    tz = helpers.local_zone()
    now = clock.now().astimezone(tz)
    tomorrow = now.date() + dt.timedelta(days=1)
    monday = now.date() + dt.timedelta(days=7 - now.weekday())
    return [("1h", "1 hour"), ("3h", "3 hours"), (f"{tomorrow.isoformat()}T09:00", "Tomorrow 09:00"),
            (f"{monday.isoformat()}T09:00", f"Monday {monday.day} {monday.strftime('%b')} 09:00")]


def _snooze_until(raw: str) -> dt.datetime:
    """The form's choice ("1h", "3h" or a local "YYYY-MM-DDTHH:MM") as naive UTC."""
    from appliance.core import clock

    raw = (raw or "").strip()[:32]
    if raw in ("1h", "3h"):
        return clock.naive_now() + dt.timedelta(hours=int(raw[0]))
    try:
        local = dt.datetime.fromisoformat(raw)
        if local.tzinfo is None:
            local = local.replace(tzinfo=helpers.local_zone())
        return local.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise ServiceError("Pick when the conversation should come back (a date and time).", 422) from exc


def _back(tenant, conv):
    return redirect(url_for("inbox.conversation", tenant_id=tenant.id, conversation_id=conv.id))


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/snooze", methods=["POST"])
@helpers.tenant_view("agent")
def snooze(tenant, conversation_id):
    conv = _conversation(tenant, conversation_id)
    try:
        conversations.snooze(conv, _snooze_until(request.form.get("until") or request.form.get("at", "")))
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    flash(f"Snoozed until {helpers.ago(conv.snoozed_until)}.", "info")
    return redirect(url_for("inbox.index", tenant_id=tenant.id))


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/priority", methods=["POST"])
@helpers.tenant_view("agent")
def set_priority(tenant, conversation_id):
    conv = _conversation(tenant, conversation_id)
    try:
        conversations.set_priority(conv, request.form.get("priority", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    flash(f"Priority set to {conversations.priority_name(conv.priority)}.", "info")
    return _back(tenant, conv)


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/labels", methods=["POST"])
@helpers.tenant_view("agent")
def add_label(tenant, conversation_id):
    conv = _conversation(tenant, conversation_id)
    raw = request.form.get("label_id", "")
    try:
        label = labels.add(conv, int(raw) if raw.isdigit() and len(raw) <= 18 else None)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _render_conversation(tenant, conv, exc.status)
    flash(f"Label {label.name} added.", "info")
    return _back(tenant, conv)


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/labels/<id:label_id>/remove", methods=["POST"])
@helpers.tenant_view("agent")
def remove_label(tenant, conversation_id, label_id):
    conv = _conversation(tenant, conversation_id)
    labels.remove(conv, label_id)
    flash("Label removed.", "info")
    return _back(tenant, conv)


@inbox.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/unread", methods=["POST"])
@helpers.tenant_view("agent")
def mark_unread(tenant, conversation_id):
    conversations.mark_unread(g.principal.user_id, _conversation(tenant, conversation_id))
    flash("Marked unread.", "info")
    return redirect(url_for("inbox.index", tenant_id=tenant.id))


@inbox.route("/t/<id:tenant_id>/labels")
@helpers.tenant_view("agent")
def label_list(tenant):
    return render_template("inbox/labels.html", rows=labels.usable_labels(tenant))


@inbox.route("/t/<id:tenant_id>/labels", methods=["POST"])
@helpers.tenant_view("supervisor")
def label_create(tenant):
    try:
        labels.create_label(tenant, name=form_text("name", 200), color=request.form.get("color") or "#6e7781",
                            shared=helpers.form_bool("shared"), actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_template("inbox/labels.html", rows=labels.usable_labels(tenant)), exc.status
    flash("Label created.", "info")
    return redirect(url_for("inbox.label_list", tenant_id=tenant.id))


@inbox.route("/t/<id:tenant_id>/labels/<id:label_id>", methods=["POST"])
@helpers.tenant_view("supervisor")
def label_update(tenant, label_id):
    label = owned_or_404(Label, label_id, tenant, "supervisor")
    try:
        if request.form.get("delete") == "1":
            labels.delete_label(label, actor_id=g.principal.user_id)
            flash("Label deleted.", "info")
        else:
            labels.update_label(label, name=form_text("name", 200), color=request.form.get("color") or label.color,
                                shared=helpers.form_bool("shared"), actor_id=g.principal.user_id)
            flash("Label saved.", "info")
    except ServiceError as exc:
        flash(str(exc), "error")
        return render_template("inbox/labels.html", rows=labels.usable_labels(tenant)), exc.status
    return redirect(url_for("inbox.label_list", tenant_id=tenant.id))
