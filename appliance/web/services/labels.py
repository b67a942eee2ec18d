"""Labels: a tenant's tags for conversations, shared down like canned answers.

A label belongs to one tenant; flagged ``shared``, its sub-accounts may put it on their
conversations too (they cannot change it). The UI and the API change labels only through
here, so both leave the same audit events.
"""

from __future__ import annotations

import re

from appliance.web.access import shared_down
from appliance.web.db import write_transaction
from appliance.web.models.audit import record
from appliance.web.models.contact_center import Conversation, ConversationLabel, Label
from appliance.web.models.tenancy import Tenant
from appliance.web.services import Conflict, ServiceError, live

NAME_CHARS = 40
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
PER_CONVERSATION = 20


def _name(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError("name: a label needs a name.", 422)
    value = " ".join(value.split())
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ServiceError("name: a label's name cannot hold control characters.", 422)
    if len(value) > NAME_CHARS:
        raise ServiceError(f"name is limited to {NAME_CHARS} characters.", 422)
    return value


def _color(value) -> str:
    if not isinstance(value, str) or not COLOR.match(value):
        raise ServiceError("color: a colour as #rrggbb.", 422)
    return value.lower()


def _taken(tenant_id: int, name: str, except_id=None) -> bool:
    query = Label.select().where(Label.tenant == tenant_id, Label.name == name)
    if except_id is not None:
        query = query.where(Label.id != except_id)
    return query.exists()


def create_label(tenant: Tenant, *, name, color="#6e7781", shared=False, actor_id=None) -> Label:
    name = _name(name)
    if _taken(tenant.id, name):
        raise Conflict(f"A label named {name!r} exists already.")
    label = Label.create(tenant=tenant, name=name, color=_color(color), shared=bool(shared))
    record("label.create", actor_id=actor_id, tenant_id=tenant.id, target=f"label:{label.id}")
    return label


def update_label(label: Label, *, name=None, color=None, shared=None, actor_id=None) -> Label:
    if name is not None:
        name = _name(name)
        if _taken(label.tenant_id, name, label.id):
            raise Conflict(f"A label named {name!r} exists already.")
        label.name = name
    if color is not None:
        label.color = _color(color)
    if shared is not None:
        label.shared = bool(shared)
    label.save()
    record("label.update", actor_id=actor_id, tenant_id=label.tenant_id, target=f"label:{label.id}")
    return label


def delete_label(label: Label, actor_id=None) -> None:
    """Deleting takes it off every conversation (also sub-accounts' ones, when it was shared)."""
    with write_transaction():
        ConversationLabel.delete().where(ConversationLabel.label == label.id).execute()
        label.delete_instance()
    record("label.delete", actor_id=actor_id, tenant_id=label.tenant_id, target=f"label:{label.id}")


def usable_labels(tenant: Tenant) -> list[Label]:
    """The tenant's own labels, then those its ancestors share down (an own name hides an inherited one)."""
    rows = sorted(Label.select().where((Label.tenant == tenant.id) | shared_down(Label, tenant)),
                  key=lambda r: (r.name.casefold(), r.id))  # the same order whatever the database's collation
    own = [r for r in rows if r.tenant_id == tenant.id]
    taken = {r.name for r in own}
    return own + [r for r in rows if r.tenant_id != tenant.id and r.name not in taken]


def usable_label(tenant: Tenant, label_id) -> Label | None:
    """``label_id`` if ``tenant`` may use it (its own or shared down to it), else None."""
    if not isinstance(label_id, int) or isinstance(label_id, bool):
        return None
    return (Label.select().where(Label.id == label_id, (Label.tenant == tenant.id) | shared_down(Label, tenant))
            .first())


def add(conv: Conversation, label_id) -> Label:
    tenant = Tenant.get_by_id(conv.tenant_id)
    label = usable_label(tenant, label_id)
    if label is None:
        raise ServiceError("label_id is not a label of this conversation's organisation or shared with it.", 422)
    with write_transaction():
        if ConversationLabel.select().where(ConversationLabel.conversation == conv.id).count() >= PER_CONVERSATION:
            raise ServiceError(f"A conversation takes at most {PER_CONVERSATION} labels.", 422)
        ConversationLabel.insert(conversation=conv.id, label=label.id).on_conflict_ignore().execute()
        live.publish(conv.tenant_id, conv.id, "status")
    return label


def remove(conv: Conversation, label_id: int) -> bool:
    with write_transaction():
        gone = ConversationLabel.delete().where(ConversationLabel.conversation == conv.id,
                                                ConversationLabel.label == label_id).execute()
        if gone:
            live.publish(conv.tenant_id, conv.id, "status")
    return bool(gone)


def of_conversations(ids) -> dict[int, list[Label]]:
    """conversation id -> its labels by name, in one query for a page of rows."""
    ids = list({i for i in ids if i is not None})
    out: dict[int, list[Label]] = {}
    if not ids:
        return out
    query = (Label.select(Label, ConversationLabel.conversation.alias("conv_id")).join(ConversationLabel)
             .where(ConversationLabel.conversation.in_(ids)).order_by(Label.name, Label.id).objects())
    for row in query:
        out.setdefault(row.conv_id, []).append(row)
    return out
