"""The audit trail: a keyed chain anchored outside the database.

Each event carries an HMAC-SHA256 over its content and its predecessor's MAC, with a key
derived from the installation's private key (``keys/installation.key``), never stored in
the database. Someone who can write the database but not read that key can delete or
edit rows, but cannot recompute a chain that verifies.

Deleting the newest rows (or all of them) leaves a chain that is intact but shorter: the
head is therefore anchored outside the database too, in the instance directory
(``audit_anchor_file``: the last anchored id, its MAC and the number of events up to it,
MACed as well). Verification demands the anchored event, unchanged, and exactly that many
events up to it. The anchor only moves forward, and only over events that verify, after
they are committed (an anchor written before a rollback would claim a lost row).

Events written before the chain was keyed (scheme ``sha256``) are checked as the plain
hash chain they were; once one keyed event exists, no plain one may follow it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from peewee import SQL, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from appliance.web.db import LOCK_AUDIT, database_proxy, serialized
from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant

GENESIS = "0" * 64
KEYED = "hmac1"
LEGACY = "sha256"
KEY_PURPOSE = "audit-chain"


class AuditEvent(BaseModel):
    at = DateTimeField(default=utcnow)
    tenant = ForeignKeyField(Tenant, null=True, on_delete="SET NULL")
    actor_id = IntegerField(null=True)  # a user id; never an e-mail or a name
    action = CharField(max_length=64)
    target = CharField(max_length=64, null=True)  # "conversation:42"
    details = TextField(default="{}")  # ids and flags only, no personal data
    prev_hash = CharField(max_length=64)
    hash = CharField(max_length=64)
    # The column's own default names the old scheme: rows from before the key (m0010).
    scheme = CharField(max_length=8, default=KEYED, constraints=[SQL("DEFAULT 'sha256'")])

    def material(self) -> bytes:
        return json.dumps(
            [self.prev_hash, self.at.isoformat(), self.tenant_id, self.actor_id, self.action, self.target,
             self.details],
            separators=(",", ":"),
        ).encode()

    def compute_hash(self, key: bytes | None = None) -> str:
        if self.scheme == LEGACY:
            return hashlib.sha256(self.material()).hexdigest()
        if key is None:
            key = trail().key
        return hmac.new(key, self.material(), hashlib.sha256).hexdigest()


# --- the key and the anchor: bound at start-up, outside the database --------------------------

@dataclass
class Trail:
    key: bytes
    anchor_path: Path


_bound: dict = {}


def bind_trail(instance) -> Trail:
    """Load the chain key and the anchor's place for ``instance`` (app start, CLI commands)."""
    from appliance.core.identity import load_identity

    bound = Trail(key=load_identity(instance).derive_key(KEY_PURPOSE),
                  anchor_path=instance.path(instance["audit_anchor_file"]))
    _bound["trail"] = bound
    return bound


def trail() -> Trail:
    try:
        return _bound["trail"]
    except KeyError:
        raise RuntimeError("The audit trail is not bound: create the app or open the database through "
                           "appliance.cli.context.open_database, which load the chain key.") from None


@dataclass(frozen=True)
class Anchor:
    last_id: int
    last_hash: str
    count: int

    def mac(self, key: bytes) -> str:
        text = f"{self.last_id}:{self.last_hash}:{self.count}".encode()
        return hmac.new(key, b"anchor:" + text, hashlib.sha256).hexdigest()


class AnchorError(ValueError):
    """The anchor file exists but is unreadable or forged."""


def read_anchor(bound: Trail | None = None) -> Anchor | None:
    bound = bound or trail()
    try:
        data = json.loads(bound.anchor_path.read_text())
        anchor = Anchor(int(data["last_id"]), str(data["last_hash"]), int(data["count"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise AnchorError(f"{bound.anchor_path} is not a readable audit anchor") from exc
    if not hmac.compare_digest(str(data.get("mac", "")), anchor.mac(bound.key)):
        raise AnchorError(f"{bound.anchor_path} does not carry a valid MAC (edited or from another installation)")
    return anchor


def _write_anchor(bound: Trail, anchor: Anchor) -> None:
    data = {"last_id": anchor.last_id, "last_hash": anchor.last_hash, "count": anchor.count,
            "mac": anchor.mac(bound.key)}
    tmp = bound.anchor_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, bound.anchor_path)


@contextlib.contextmanager
def _anchor_lock(bound: Trail):
    lock_path = bound.anchor_path.with_suffix(".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def advance_anchor() -> Anchor | None:
    """Move the anchor to the newest committed event, if every event after it verifies.

    Never moves it back or over a break: a shortened or rewritten chain keeps the old
    anchor, which is what makes the damage show.
    """
    bound = trail()
    with _anchor_lock(bound):
        try:
            anchor = read_anchor(bound)
        except AnchorError:
            return None  # leave the evidence as it is
        query = AuditEvent.select().order_by(AuditEvent.id)
        if anchor is None:
            rows, prev, count = list(query), GENESIS, 0
        else:
            rows = list(query.where(AuditEvent.id >= anchor.last_id))
            if not rows or rows[0].id != anchor.last_id or rows[0].hash != anchor.last_hash:
                return anchor
            prev, count, rows = rows[0].hash, anchor.count, rows[1:]
        if not rows:
            return anchor
        keyed_seen = anchor is not None and _is_keyed(anchor.last_id)
        for event in rows:
            if _link_problem(event, prev, bound.key, keyed_seen):
                return anchor
            keyed_seen = keyed_seen or event.scheme == KEYED
            prev = event.hash
            count += 1
        new = Anchor(rows[-1].id, rows[-1].hash, count)
        _write_anchor(bound, new)
        return new


def _is_keyed(event_id: int) -> bool:
    row = AuditEvent.get_or_none(AuditEvent.id == event_id)
    return row is not None and row.scheme == KEYED


def _link_problem(event: AuditEvent, prev: str, key: bytes, keyed_seen: bool) -> str | None:
    if event.prev_hash != prev:
        return "does not link to the entry before it"
    if event.scheme not in (KEYED, LEGACY):
        return f"has an unknown scheme {event.scheme!r}"
    if event.scheme == LEGACY and keyed_seen:
        return "is an unkeyed entry after keyed ones"
    if not hmac.compare_digest(event.compute_hash(key), event.hash):
        return "does not match its MAC"
    return None


# --- writing ----------------------------------------------------------------------------------

def record(action: str, *, actor_id=None, tenant_id=None, target=None, **details) -> AuditEvent:
    """Append one event to the chain; concurrent writers take turns, so it never forks."""
    bound = trail()
    outer = database_proxy.in_transaction()
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
            scheme=KEYED,
        )
        event.hash = event.compute_hash(bound.key)
        event.save()
    if outer:
        _pending_anchor()  # the caller's transaction may still roll back: anchor after it
    else:
        advance_anchor()
    return event


def _pending_anchor() -> None:
    from flask import g, has_app_context

    if has_app_context():
        g.audit_anchor_pending = True


# --- checking ---------------------------------------------------------------------------------

@dataclass
class ChainReport:
    total: int = 0
    broken: list[int] = field(default_factory=list)  # ids of entries that fail their link or MAC
    problems: list[str] = field(default_factory=list)  # truncation, anchor faults: whole-chain findings
    anchored_id: int | None = None

    @property
    def intact(self) -> bool:
        return not self.broken and not self.problems


def verify() -> ChainReport:
    """Check every link and MAC, and the chain against its anchor outside the database."""
    bound = trail()
    report = ChainReport()
    prev, keyed_seen, count_to_anchor, anchor_row = GENESIS, False, 0, None
    try:
        anchor = read_anchor(bound)
    except AnchorError as exc:
        anchor = None
        report.problems.append(f"{exc}: the trail cannot be checked for truncation.")
    for event in AuditEvent.select().order_by(AuditEvent.id):
        report.total += 1
        if _link_problem(event, prev, bound.key, keyed_seen):
            report.broken.append(event.id)
        keyed_seen = keyed_seen or event.scheme == KEYED
        prev = event.hash
        if anchor is not None and event.id <= anchor.last_id:
            count_to_anchor += 1
            if event.id == anchor.last_id:
                anchor_row = event
    if anchor is not None:
        report.anchored_id = anchor.last_id
        if anchor_row is None:
            report.problems.append(
                f"Truncated: the anchored entry {anchor.last_id} is gone ({report.total} entries left, "
                f"{anchor.count} anchored).")
        elif anchor_row.hash != anchor.last_hash:
            report.problems.append(f"Rewritten: entry {anchor.last_id} differs from the anchored one.")
        elif count_to_anchor != anchor.count:
            report.problems.append(
                f"Entries removed: {count_to_anchor} up to entry {anchor.last_id}, {anchor.count} anchored.")
    elif keyed_seen and not report.problems:
        report.problems.append(
            f"The anchor file {bound.anchor_path} is missing while keyed entries exist: "
            "deleted, or the instance directory was restored without it.")
    return report


def verify_chain() -> list[int]:
    """The ids of events whose link or MAC is broken (empty: every link holds)."""
    return verify().broken


def head() -> dict:
    """The anchored head, for the backup manifest and the sync checkpoint (count only)."""
    anchor = read_anchor()
    if anchor is None:
        return {"last_id": None, "last_hash": None, "count": 0}
    return {"last_id": anchor.last_id, "last_hash": anchor.last_hash, "count": anchor.count}
