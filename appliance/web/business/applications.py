"""Applications for service: a quote from the catalogue, the provider manager's review, a contract.

An account's admin applies (or asks for a change) from the control panel; a newcomer applies on
the provider's public page, limited per sender address (a keyed hash, never the address itself).
The manager comments, changes the lines, accepts or declines; every step is in the audit trail.
Accepting makes the contract (and, for a newcomer, the account) and activates it on its start
day: at once when that day has come, otherwise as a future-dated change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from appliance.core.licence.programs import KNOWN_PROGRAMS
from appliance.web.business import catalogue, contracts, schedule
from appliance.web.business.models import Application, ApplicationComment
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import ACCOUNT, PROVIDER, Tenant
from appliance.web.services import ServiceError, tenants

MAX_LINES = 12


def parse_lines(text: str) -> list[tuple[str, int]]:
    """``"webchat:10, email:1"`` -> ``[("webchat", 10), ("email", 1)]``, each program once."""
    out: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        program, _, seats = part.partition(":")
        program = program.strip()
        if program not in KNOWN_PROGRAMS:
            raise ServiceError(f"lines: unknown program {program[:32]!r}; use {', '.join(sorted(KNOWN_PROGRAMS))}", 422)
        if not seats.strip().isdigit() or not 0 <= int(seats) <= 100000:
            raise ServiceError(f"lines: seats for {program} must be a whole number, as in {program}:10", 422)
        out.append((program, int(seats)))
    if not out or len(out) > MAX_LINES or len({p for p, _ in out}) != len(out):
        raise ServiceError(f"lines: name 1 to {MAX_LINES} programs, each once, as in webchat:10,email:1", 422)
    return out


def format_lines(lines: list[tuple[str, int]]) -> str:
    return ",".join(f"{p}:{s}" for p, s in lines)


def address_key(secret: bytes, address: str) -> str:
    return hmac.new(secret, f"application:{address}".encode(), hashlib.sha256).hexdigest()


def _check_rate(key: str, per_hour: int) -> None:
    since = utcnow() - dt.timedelta(hours=1)
    recent = Application.select().where(Application.address_key == key, Application.created_at >= since).count()
    if recent >= per_hour:
        raise ServiceError(f"Too many applications from this address in the last hour (limit {per_hour}); "
                           "try again later or contact the provider.", 429)


def apply(*, lines_text: str, starts_on: dt.date, account: Tenant | None = None, company: str | None = None,
          name: str | None = None, email: str | None = None, actor_id=None, address: tuple[bytes, str] | None = None,
          per_hour: int = 5, today: dt.date) -> Application:
    lines = parse_lines(lines_text)
    if starts_on < today:
        raise ServiceError("starts_on: a service cannot start in the past", 422)
    if account is None:
        for field, value, limit in (("company", company, 120), ("name", name, 120), ("email", email, 254)):
            if not (value or "").strip() or len(value) > limit:
                raise ServiceError(f"{field}: required, at most {limit} characters", 422)
        if "@" not in email:
            raise ServiceError("email: an address like someone@example.com", 422)
    elif account.level != ACCOUNT:
        raise ServiceError("applications are made by accounts (level 2)", 422)
    key = None
    if address is not None:
        key = address_key(*address)
        _check_rate(key, per_hour)
    quote = catalogue.quote(lines, starts_on)
    owner = account or Tenant.get(Tenant.level == PROVIDER)
    application = Application.create(
        tenant=owner, account=account, company=(company or "").strip() or None,
        applicant_name=(name or "").strip() or None,
        applicant_email=(email or "").strip() or None, lines=format_lines(lines), starts_on=starts_on,
        quote_monthly_minor=quote["monthly_minor"], quote_setup_minor=quote["setup_minor"], address_key=key,
        created_by=actor_id)
    record("application.submit", actor_id=actor_id, tenant_id=owner.id, target=f"application:{application.id}")
    return application


def comment(application: Application, body: str, *, actor_id) -> ApplicationComment:
    body = (body or "").strip()
    if not body or len(body) > 4000:
        raise ServiceError("comment: 1 to 4000 characters", 422)
    row = ApplicationComment.create(tenant=application.tenant_id, application=application, author=actor_id, body=body)
    record("application.comment", actor_id=actor_id, tenant_id=application.tenant_id,
           target=f"application:{application.id}")
    return row


def change_lines(application: Application, lines_text: str, *, actor_id) -> Application:
    _open(application)
    lines = parse_lines(lines_text)
    quote = catalogue.quote(lines, application.starts_on)
    Application.update(lines=format_lines(lines), quote_monthly_minor=quote["monthly_minor"],
                       quote_setup_minor=quote["setup_minor"]).where(Application.id == application.id).execute()
    record("application.change", actor_id=actor_id, tenant_id=application.tenant_id,
           target=f"application:{application.id}", lines=format_lines(lines))
    return Application.get_by_id(application.id)


def _open(application: Application) -> None:
    if application.state != "submitted":
        raise ServiceError(f"the application was {application.state} already", 409)


def decline(application: Application, *, actor_id) -> Application:
    _open(application)
    Application.update(state="declined", decided_by=actor_id, decided_at=utcnow()).where(
        Application.id == application.id).execute()
    record("application.decline", actor_id=actor_id, tenant_id=application.tenant_id,
           target=f"application:{application.id}")
    return Application.get_by_id(application.id)


def accept(application: Application, *, actor_id, today: dt.date, term_days: int = 365,
           renewal: str = "manual") -> Application:
    """Make the contract (and the account for a newcomer) and activate it on its start day."""
    _open(application)
    lines = parse_lines(application.lines)
    with Application._meta.database.atomic():
        account = application.account
        if account is None:
            provider = Tenant.get(Tenant.level == PROVIDER)
            account = tenants.create_child(provider, application.company, "customer", actor_id=actor_id)
        contract = contracts.create(account, lines, starts_on=application.starts_on,
                                    ends_on=application.starts_on + dt.timedelta(days=term_days), renewal=renewal,
                                    actor_id=actor_id)
        if application.starts_on <= today:
            contracts.set_status(contract, "active", on=today, actor_id=actor_id)
        else:
            schedule.schedule(account, "set_status", application.starts_on, contract=contract, value="active",
                              actor_id=actor_id)
        Application.update(state="accepted", decided_by=actor_id, decided_at=utcnow(), contract=contract,
                           account=account).where(Application.id == application.id).execute()
        record("application.accept", actor_id=actor_id, tenant_id=account.id,
               target=f"application:{application.id}", contract=contract.id)
    return Application.get_by_id(application.id)
