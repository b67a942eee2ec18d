"""The audit trail: a hash chain, so a deleted or edited entry shows."""

from __future__ import annotations

import hashlib
import json

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from appliance.web.db import LOCK_AUDIT, serialized
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant


class AuditEvent(BaseModel):
    at = DateTimeField(default=utcnow)
    tenant = ForeignKeyField(Tenant, null=True, on_delete="SET NULL")
    actor_id = IntegerField(null=True)  # a user id; never an e-mail or a name
    action = CharField(max_length=64)
    target = CharField(max_length=64, null=True)  # "conversation:42"
    details = TextField(default="{}")  # ids and flags only, no personal data
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)

    def compute_hash(self) -> str:
        material = json.dumps(
            [
                self.prev_hash,
                self.at.isoformat(),
                self.tenant_id,
                self.actor_id,
                self.action,
                self.target,
                self.details,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(material.encode()).hexdigest()


GENESIS = "0" * 64


def record(action: str, *, actor_id=None, tenant_id=None, target=None, **details) -> AuditEvent:
    """Append one event to the chain; concurrent writers take turns, so it never forks."""
    with serialized(LOCK_AUDIT):
        last = AuditEvent.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).first()
        event = AuditEvent(
            at=utcnow(),
            tenant=tenant_id,
            actor_id=actor_id,
            action=action,
            target=target,
            details=json.dumps(details, sort_keys=True, default=str),
            prev_hash=last.hash if last else GENESIS,
        )
        event.hash = event.compute_hash()
        event.save()
    return event


def verify_chain() -> list[int]:
    """Return the ids of events whose link is broken (empty list: intact)."""
    broken, prev = [], GENESIS
    for event in AuditEvent.select().order_by(AuditEvent.id):
        if event.prev_hash != prev or event.compute_hash() != event.hash:
            broken.append(event.id)
        prev = event.hash
    return broken
