"""Reading the audit trail: what an admin may see of it, filtered, and as CSV.

An admin sees the events of their tenant and its sub-accounts; the provider's admins
see every event, installation-wide ones (no tenant) included. Writing events and
checking the chain live with the model (appliance.web.models.audit).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from appliance.web.models.audit import AuditEvent, record
from appliance.web.models.tenancy import PROVIDER, Tenant
from appliance.web.services import ServiceError

PAGE = 100
EXPORT_LIMIT = 100_000
CSV_COLUMNS = ("id", "at", "tenant_id", "actor_id", "action", "target", "details")


@dataclass(frozen=True)
class Filters:
    action: str = ""  # a prefix: "auth." or "auth.login_failed"
    actor_id: int | None = None
    since: dt.date | None = None
    until: dt.date | None = None  # inclusive

    @classmethod
    def parse(cls, args) -> Filters:
        action = (args.get("action") or "").strip()[:64]
        return cls(action=action, actor_id=_int(args.get("actor"), "actor"),
                   since=_date(args.get("since"), "since"), until=_date(args.get("until"), "until"))

    def as_args(self) -> dict:
        out = {"action": self.action, "actor": self.actor_id, "since": self.since, "until": self.until}
        return {k: v for k, v in out.items() if v not in (None, "")}


def _int(raw, name):
    if raw in (None, ""):
        return None
    if not str(raw).isdigit() or len(str(raw)) > 18:
        raise ServiceError(f"{name} must be a user id (a whole number).", 400)
    return int(raw)


def _date(raw, name):
    if raw in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise ServiceError(f"{name} must be a date like 2030-04-17.", 400) from None


def events_for(tenant: Tenant, filters: Filters):
    """The events ``tenant``'s admins may read, newest first."""
    query = AuditEvent.select()
    # A tenant's path lists its ancestors and itself ("/1/4/"): descendants extend it.
    subtree = AuditEvent.tenant.in_(Tenant.select(Tenant.id).where(Tenant.path.startswith(tenant.path)))
    if tenant.level == PROVIDER:
        subtree = subtree | AuditEvent.tenant.is_null()
    query = query.where(subtree)
    if filters.action:
        query = query.where(AuditEvent.action.startswith(filters.action))
    if filters.actor_id is not None:
        query = query.where(AuditEvent.actor_id == filters.actor_id)
    if filters.since:
        query = query.where(AuditEvent.at >= dt.datetime.combine(filters.since, dt.time()))
    if filters.until:
        query = query.where(AuditEvent.at < dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time()))
    return query.order_by(AuditEvent.id.desc())


def export_csv(tenant: Tenant, filters: Filters, *, actor_id: int | None) -> str:
    """The filtered events as CSV; the export itself is an audited event."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for event in events_for(tenant, filters).limit(EXPORT_LIMIT):
        writer.writerow([event.id, event.at.isoformat() + "Z", event.tenant_id, event.actor_id,
                         _cell(event.action), _cell(event.target), _cell(event.details)])
        count += 1
    record("audit.export", actor_id=actor_id, tenant_id=tenant.id, target=f"tenant:{tenant.id}", rows=count,
           filters={k: str(v) for k, v in filters.as_args().items()})
    return out.getvalue()


def _cell(value):
    # A spreadsheet runs a cell starting with = + - @ as a formula: quote it as text.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
