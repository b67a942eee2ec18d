"""The inbox in the API: labels (shared down like canned answers), a conversation's labels,
snooze, priority, search and per-user read markers; the same services as the pages."""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, g, jsonify, request

from appliance.core.calendar import zone
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import query_int, spec
from appliance.web.models.contact_center import PRIORITIES, STATUSES, Conversation
from appliance.web.models.tenancy import Tenant
from appliance.web.services import contacts, conversations, labels, pan
from appliance.web.validation import F

LABEL_BODY = {
    "name": F("string", required=True, max_length=labels.NAME_CHARS),
    "color": F("string", max_length=7, description="#rrggbb"),
    "shared": F("boolean", description="Offer it to the sub-accounts below (read-only there)"),
}
LABEL_PATCH = {k: F(f.type, max_length=f.max_length, description=f.description) for k, f in LABEL_BODY.items()}
ADD_LABEL_BODY = {"label_id": F("integer", required=True,
                                description="A label of the conversation's tenant or shared down to it")}
SNOOZE_BODY = {"until": F("string", required=True, max_length=40,
                          description="ISO 8601 date and time (with Z or an offset; without one: the "
                                      "installation's time zone) when the conversation reopens")}
PRIORITY_BODY = {"priority": F("string", required=True, enum=PRIORITIES)}
INBOX_QUERY = {
    "status": F("string", enum=STATUSES),
    "assignee": F("string", description="me, unassigned or a user id"),
    "channel_id": F("integer"),
    "team_id": F("integer"),
    "label_id": F("integer", description="Only conversations with this label"),
    "priority": F("string", enum=PRIORITIES),
    "q": F("string", description="The contact's e-mail, phone or whole name, matched exactly (case and "
                                 "spacing aside) through blind indexes; a part of a name finds nothing"),
    "sort": F("string", enum=conversations.SORTS, description="newest (default) or priority (most urgent first)"),
    "include_subaccounts": F("boolean"),
    "cursor": F("string"),
    "limit": F("integer"),
}


def _actor():
    return g.principal.user_id


def _rows_json(rows, tenants: dict) -> list[dict]:
    """Inbox rows for the token's user: unread, labels and the preview (masked where the tenant masks)."""
    unread = conversations.unread_among(_actor(), rows)
    on = labels.of_conversations(r.id for r in rows)
    masking = {tid: pan.masking_on(t) for tid, t in tenants.items()}
    items = []
    for r in rows:
        preview = r.preview
        if preview and masking.get(r.tenant_id):
            preview = pan.mask(preview)
        items.append(r.to_json() | {"unread": r.id in unread, "labels": [lb.to_json() for lb in on.get(r.id, [])],
                                    "preview": preview})
    return items


def _tenants_of(rows) -> dict:
    ids = {r.tenant_id for r in rows}
    return {t.id: t for t in Tenant.select().where(Tenant.id.in_(ids))} if ids else {}


@api.route("/tenants/<id:tenant_id>/inbox")
@spec("The inbox as an agent sees it: newest (or most urgent) first, filtered by status, assignee, channel, "
      "team, label, priority or a contact search, keyset-paginated with next_cursor; each row with the "
      "token's user's unread mark, its labels and the newest message's preview", query=INBOX_QUERY,
      tag="conversations", response=R.page(R.INBOX_ROW))
def inbox(tenant):
    include_sub = request.args.get("include_subaccounts") in ("1", "true")
    q = (request.args.get("q") or "").strip()
    label_id = query_int("label_id", 0, 0, 2**62) or None
    if label_id and labels.usable_label(tenant, label_id) is None:
        abort(422, description="label_id is not a label of this tenant or shared with it.")
    scope = [tenant]
    if include_sub:
        scope = list(Tenant.select().where(Tenant.path.startswith(tenant.path)).order_by(Tenant.path)
                     .limit(contacts.SEARCH_TENANTS))
    rows, cursor = conversations.inbox(
        tenant,
        status=request.args.get("status"),
        assignee=request.args.get("assignee"),
        channel_id=query_int("channel_id", 0, 0, 2**62) or None,
        team_id=query_int("team_id", 0, 0, 2**62) or None,
        include_subaccounts=include_sub,
        cursor=request.args.get("cursor"),
        limit=query_int("limit", conversations.PAGE_SIZE),
        viewer_id=_actor(),
        label_id=label_id,
        priority=request.args.get("priority"),
        contact_ids=contacts.search(scope, q) if q else None,
        sort=request.args.get("sort") or "newest",
    )
    return jsonify(items=_rows_json(rows, _tenants_of(rows)), next_cursor=cursor)


# --- labels ------------------------------------------------------------------------------

@api.route("/tenants/<id:tenant_id>/labels")
@spec("Labels a tenant may use: its own, then those its parents share down (an own name hides a parent's)",
      tag="labels", response=R.page(R.LABEL))
def list_labels(tenant):
    return jsonify(items=[lb.to_json() for lb in labels.usable_labels(tenant)], next_cursor=None)


@api.route("/tenants/<id:tenant_id>/labels", methods=["POST"])
@spec("Create a label", role="supervisor", body=LABEL_BODY, tag="labels", status=201, response=R.LABEL)
def create_label(tenant, data):
    return jsonify(labels.create_label(tenant, actor_id=_actor(), **data).to_json()), 201


@api.route("/labels/<id:label_id>")
@spec("One label (shared labels of a parent can be read)", tag="labels", shared_read=True, response=R.LABEL)
def get_label(label):
    return jsonify(label.to_json())


@api.route("/labels/<id:label_id>", methods=["PATCH"])
@spec("Change a label (its owner only: shared ones are read-only below)", role="supervisor", body=LABEL_PATCH,
      tag="labels", response=R.LABEL)
def patch_label(label, data):
    return jsonify(labels.update_label(label, actor_id=_actor(), **data).to_json())


@api.route("/labels/<id:label_id>", methods=["DELETE"])
@spec("Delete a label; it comes off every conversation (the sub-accounts' too, where it was shared)",
      role="supervisor", tag="labels", response=R.DELETED)
def delete_label(label):
    labels.delete_label(label, actor_id=_actor())
    return jsonify(deleted=label.id)


def _labels_answer(conversation: Conversation):
    on = labels.of_conversations([conversation.id]).get(conversation.id, [])
    return jsonify(conversation_id=conversation.id, labels=[lb.to_json() for lb in on])


@api.route("/conversations/<id:conversation_id>/labels")
@spec("A conversation's labels", tag="labels", response=R.CONVERSATION_LABELS)
def conversation_labels(conversation):
    return _labels_answer(conversation)


@api.route("/conversations/<id:conversation_id>/labels", methods=["POST"])
@spec("Put a label on a conversation (no change if it is there already)", body=ADD_LABEL_BODY, tag="labels",
      response=R.CONVERSATION_LABELS)
def add_conversation_label(conversation, data):
    labels.add(conversation, data["label_id"])
    return _labels_answer(conversation)


@api.route("/conversations/<id:conversation_id>/labels", methods=["DELETE"])
@spec("Take a label off a conversation (?label_id=)", query={"label_id": F("integer")}, tag="labels",
      response=R.CONVERSATION_LABELS)
def remove_conversation_label(conversation):
    label_id = query_int("label_id", 0, 0, 2**62)
    if not label_id:
        abort(400, description="label_id: give the label to take off as ?label_id=<id>.")
    labels.remove(conversation, label_id)
    return _labels_answer(conversation)


# --- snooze, priority, read markers --------------------------------------------------------

def _until(raw: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone(current_app.extensions["appliance_instance"].settings))
        return when.astimezone(dt.UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # not a time, or one at the calendar's very ends
        abort(422, description="until: an ISO 8601 date and time, e.g. 2030-04-18T09:00:00Z.")


@api.route("/conversations/<id:conversation_id>/snooze", methods=["POST"])
@spec("Snooze: pending until `until`, then the worker reopens it (an inbound message reopens it sooner; "
      "setting a status ends the snooze)", body=SNOOZE_BODY, tag="conversations", response=R.CONVERSATION)
def snooze_conversation(conversation, data):
    return jsonify(conversations.snooze(conversation, _until(data["until"])).to_json())


@api.route("/conversations/<id:conversation_id>/priority", methods=["PUT"])
@spec("Set a conversation's priority", body=PRIORITY_BODY, tag="conversations", response=R.CONVERSATION)
def set_priority(conversation, data):
    return jsonify(conversations.set_priority(conversation, data["priority"]).to_json())


def _read_state(conversation):
    return jsonify(conversation_id=conversation.id, unread=conversations.is_unread(_actor(), conversation))


@api.route("/conversations/<id:conversation_id>/read")
@spec("Whether the conversation is unread for the token's user (an inbound message since they last read it)",
      tag="conversations", response=R.READ_STATE)
def read_state(conversation):
    return _read_state(conversation)


READ_BODY = {"read": F("boolean", required=True, description="true: read (as opening it in the inbox does); "
                                                            "false: unread again")}


@api.route("/conversations/<id:conversation_id>/read", methods=["POST"])
@spec("Mark the conversation read or unread for the token's user", body=READ_BODY, tag="conversations",
      response=R.READ_STATE)
def set_read(conversation, data):
    if data["read"]:
        conversations.mark_read(_actor(), conversation)
    else:
        conversations.mark_unread(_actor(), conversation)
    return _read_state(conversation)
