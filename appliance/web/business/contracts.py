"""Contracts: an account's term, programs and seats, with prices frozen from the catalogue.

An active contract assigns its programs to the account (sub-accounts inherit them) and
caps its seats. The licence still caps the whole installation: a contract whose seats or
programs would exceed it is refused with the limit named.
"""

from __future__ import annotations

import datetime as dt
from contextlib import suppress

from appliance.web.business.catalogue import policy_on
from appliance.web.business.invoicing import balance
from appliance.web.business.models import CONTRACT_STATUSES, RENEWALS, Contract, ContractLine, SeatHistory
from appliance.web.models.tenancy import ACCOUNT
from appliance.web.services import Conflict, ServiceError
from appliance.web.services import licence as licence_service


def seats_of(lines: list[tuple[str, int]]) -> int:
    """Operator seats a contract holds: the largest seat count of its programs (the same
    operators work every program, so ten seats of web chat and of e-mail are ten people)."""
    return max((seats for _, seats in lines), default=0)


def _contracted_seats(excluding: int | None = None) -> int:
    query = Contract.select().where(Contract.status == "active")
    if excluding is not None:
        query = query.where(Contract.id != excluding)
    return sum(seats_of(lines_of(contract)) for contract in query)


def check_within_licence(lines: list[tuple[str, int]], *, contract_id: int | None = None) -> None:
    state = licence_service.current_state()
    licensed = set(state.limits.programs)
    for program, _ in lines:
        if program not in licensed:
            raise licence_service.LicenceLimitError(
                f"The licence does not include the '{program}' program "
                f"(licensed: {', '.join(sorted(licensed)) or 'none'}).", "programs")
    total = _contracted_seats(excluding=contract_id) + seats_of(lines)
    if total > state.limits.max_seats:
        raise licence_service.LicenceLimitError(
            f"Contracts would hold {total} operator seats; the licence allows {state.limits.max_seats} (max_seats). "
            "Lower the seats or ask the vendor for a licence with more seats.", "max_seats")


def credit_limit_minor(account) -> int:
    """The account's credit limit in minor units (the column is a Decimal of major units); 0: no limit."""
    return int((account.credit_limit or 0) * 100)


def check_credit(account, lines: list[tuple[str, int]], *, contract_id: int | None = None) -> None:
    """A reseller or enterprise with a credit limit may not order past it: what it owes now plus
    a month of every active contract, this one included, must stay within the limit."""
    limit = credit_limit_minor(account)
    if limit <= 0:
        return
    monthly = 0
    active = Contract.select().where(Contract.account == account.id, Contract.status == "active")
    for contract in active:
        if contract.id != contract_id:
            monthly += sum(line.monthly_fee_minor * (line.seats if line.per_seat else 1) for line in contract.lines)
    if contract_id is not None:
        monthly += sum(line.monthly_fee_minor * (line.seats if line.per_seat else 1)
                       for line in ContractLine.select().where(ContractLine.contract == contract_id))
    owed = balance(account)
    if owed + monthly > limit:
        raise ServiceError(
            f"Credit limit: {account.name} owes {owed / 100:.2f} and would be billed {monthly / 100:.2f} a month, "
            f"{(owed + monthly) / 100:.2f} in all, over its credit limit of {limit / 100:.2f}. Record a payment "
            "or raise the limit first.", 422)


def create(account, lines: list[tuple[str, int]], *, starts_on: dt.date, ends_on: dt.date,
           renewal: str = "manual", actor_id=None) -> Contract:
    """A draft contract with the prices published on ``starts_on``."""
    if account.level != ACCOUNT:
        raise ServiceError("contracts are made with accounts (level 2), not with the provider or sub-accounts", 422)
    if ends_on <= starts_on:
        raise ServiceError("ends_on must be after starts_on", 422)
    if renewal not in RENEWALS:
        raise ServiceError(f"renewal must be one of {', '.join(RENEWALS)}", 422)
    if not lines or len({p for p, _ in lines}) != len(lines):
        raise ServiceError("lines: name each program once, with its seats", 422)
    for program, seats in lines:
        if isinstance(seats, bool) or not isinstance(seats, int) or seats < 0:
            raise ServiceError(f"seats for {program} must be a whole number >= 0", 422)
    with Contract._meta.database.atomic():
        contract = Contract.create(account=account, starts_on=starts_on, ends_on=ends_on, renewal=renewal,
                                   created_by=actor_id)
        for program, seats in lines:
            policy = policy_on(program, starts_on)
            if policy is None:
                raise ServiceError(f"program {program!r} has no published price on {starts_on}", 422)
            line = ContractLine.create(
                contract=contract, program=program, seats=seats, per_seat=policy.per_seat,
                monthly_fee_minor=policy.monthly_fee_minor, setup_fee_minor=policy.setup_fee_minor,
                included_conversations=policy.included_conversations, included_messages=policy.included_messages,
                overage_conversation_minor=policy.overage_conversation_minor,
                overage_message_minor=policy.overage_message_minor)
            SeatHistory.create(line=line, effective_on=starts_on, seats=seats)
    return contract


def lines_of(contract: Contract) -> list[tuple[str, int]]:
    return [(line.program, line.seats) for line in contract.lines.order_by(ContractLine.program)]


def set_status(contract: Contract, status: str, *, on: dt.date, actor_id=None) -> Contract:
    """Activate, suspend or end a contract; activation assigns its programs from ``on``."""
    if status not in CONTRACT_STATUSES:
        raise ServiceError(f"status must be one of {', '.join(CONTRACT_STATUSES)}", 422)
    account = contract.account
    if status == "active" and contract.status != "active":
        check_within_licence(lines_of(contract), contract_id=contract.id)
        check_credit(account, lines_of(contract), contract_id=contract.id)
        start = dt.datetime.combine(max(on, contract.starts_on), dt.time(), dt.UTC)
        for program, _ in lines_of(contract):
            with suppress(Conflict):  # assigned by hand before the contract: keep it
                licence_service.assign_program(account, program, effective_from=start, actor_id=actor_id)
    elif status in ("suspended", "ended") and contract.status == "active":
        for program, _ in lines_of(contract):
            licence_service.unassign_program(account, program, actor_id=actor_id)
    Contract.update(status=status).where(Contract.id == contract.id).execute()
    return Contract.get_by_id(contract.id)


def set_seats(contract: Contract, program: str, seats: int, *, on: dt.date) -> ContractLine:
    line = ContractLine.get_or_none(ContractLine.contract == contract.id, ContractLine.program == program)
    if line is None:
        raise ServiceError(f"the contract has no {program!r} line", 422)
    if contract.status == "active":
        others = [(p, s) for p, s in lines_of(contract) if p != program]
        check_within_licence([*others, (program, seats)], contract_id=contract.id)
    ContractLine.update(seats=seats).where(ContractLine.id == line.id).execute()
    (SeatHistory.insert(line=line.id, effective_on=on, seats=seats)
     .on_conflict(conflict_target=[SeatHistory.line, SeatHistory.effective_on], update={SeatHistory.seats: seats})
     .execute())
    return ContractLine.get_by_id(line.id)


def active_contract(account) -> Contract | None:
    return (Contract.select().where(Contract.account == account.id, Contract.status == "active")
            .order_by(Contract.starts_on.desc()).first())
