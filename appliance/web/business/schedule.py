"""Future-dated changes ("from the first of next month"): scheduled, listed, cancelled, applied once.

The worker applies every pending change whose date has come in the installation's
calendar. Claiming a change and applying it happen in one transaction, and the claim is
a conditional update (``state = 'pending'``): a second worker racing on another host
blocks on the row, then finds it no longer pending and leaves it. A worker that was down
on the day applies it on its next round and records when it really applied.
"""

from __future__ import annotations

import datetime as dt
import logging

from appliance.core.calendar import today, zone
from appliance.web.business import contracts
from appliance.web.business.models import CHANGE_KINDS, CONTRACT_STATUSES, Contract, ScheduledChange
from appliance.web.models.base import utcnow
from appliance.web.services import ServiceError
from appliance.web.services import licence as licence_service

log = logging.getLogger("appliance.web.business.schedule")


def schedule(account, kind: str, effective_on: dt.date, *, contract: Contract | None = None,
             program: str | None = None, value: str | None = None, actor_id=None) -> ScheduledChange:
    if kind not in CHANGE_KINDS:
        raise ServiceError(f"kind must be one of {', '.join(CHANGE_KINDS)}", 422)
    if kind in ("set_seats", "set_status") and contract is None:
        raise ServiceError(f"{kind} needs a contract", 422)
    if kind in ("set_seats", "add_program", "remove_program") and not program:
        raise ServiceError(f"{kind} needs a program", 422)
    if kind == "set_seats" and not (value or "").isdigit():
        raise ServiceError("value: the new number of seats, a whole number", 422)
    if kind == "set_status" and value not in CONTRACT_STATUSES:
        raise ServiceError(f"value: the new status, one of {', '.join(CONTRACT_STATUSES)}", 422)
    if contract is not None and contract.account_id != account.id:
        raise ServiceError("the contract belongs to another account", 404)
    return ScheduledChange.create(account=account, contract=contract, kind=kind, program=program, value=value,
                                  effective_on=effective_on, created_by=actor_id)


def pending(account=None):
    query = ScheduledChange.select().where(ScheduledChange.state == "pending")
    if account is not None:
        query = query.where(ScheduledChange.account == account.id)
    return query.order_by(ScheduledChange.effective_on, ScheduledChange.id)


def cancel(change: ScheduledChange) -> bool:
    """Cancel a change that has not applied yet; False if it already did (or was cancelled)."""
    return bool(ScheduledChange.update(state="cancelled")
                .where(ScheduledChange.id == change.id, ScheduledChange.state == "pending").execute())


def _apply(change: ScheduledChange) -> str:
    account = change.account
    if change.kind == "set_seats":
        contracts.set_seats(change.contract, change.program, int(change.value), on=change.effective_on)
        return f"{change.program}: {change.value} seats"
    if change.kind == "set_status":
        contracts.set_status(change.contract, change.value, on=change.effective_on, actor_id=change.created_by_id)
        return f"contract {change.contract_id}: {change.value}"
    if change.kind == "add_program":
        start = dt.datetime.combine(change.effective_on, dt.time(), dt.UTC)
        licence_service.assign_program(account, change.program, effective_from=start, actor_id=change.created_by_id)
        return f"{change.program} assigned"
    licence_service.unassign_program(account, change.program, actor_id=change.created_by_id)
    return f"{change.program} removed"


def apply_one(change_id: int, *, now: dt.datetime | None = None) -> bool:
    """Claim and apply one change in a transaction; False if another worker had it."""
    database = ScheduledChange._meta.database
    with database.atomic():
        claimed = (ScheduledChange.update(state="applied", applied_at=now or utcnow())
                   .where(ScheduledChange.id == change_id, ScheduledChange.state == "pending").execute())
        if not claimed:
            return False
        change = ScheduledChange.get_by_id(change_id)
        try:
            with database.atomic():  # a savepoint: a refused change is recorded, not half-applied
                outcome = _apply(change)
        except ServiceError as exc:
            ScheduledChange.update(state="failed", outcome=str(exc)[:1000]).where(
                ScheduledChange.id == change_id).execute()
            log.warning("scheduled change %s refused: %s", change_id, exc)
            return True
        ScheduledChange.update(outcome=outcome).where(ScheduledChange.id == change_id).execute()
    return True


def apply_due(on: dt.date) -> int:
    """Apply every pending change dated on or before ``on``; returns how many this call applied."""
    due = [c.id for c in ScheduledChange.select(ScheduledChange.id)
           .where(ScheduledChange.state == "pending", ScheduledChange.effective_on <= on)
           .order_by(ScheduledChange.effective_on, ScheduledChange.id)]
    return sum(apply_one(change_id) for change_id in due)


def scheduled_changes_job(app) -> None:
    apply_due(today(zone(app.extensions["appliance_instance"].settings)))
