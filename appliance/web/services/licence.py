"""The licence inside the app: storing licences, the clock mark, and enforcing limits.

The tenant service, the UI and the API call four functions before anything grows:

- :func:`check_can_create_tenant` before an account or sub-account is created;
- :func:`check_can_add_seat` before a membership is created;
- :func:`check_can_assign_program` before a program is assigned to a tenant;
- :func:`require_program` before a program's feature is used.

Each raises :class:`LicenceLimitError` (a ServiceError, so the API answers 403
with a JSON error and the UI flashes the message) naming the limit.

What counts:

- a *tenant* is an active tenant below the provider (an account or a sub-account);
- an *operator seat* is a membership (role agent, supervisor or admin) at an
  active tenant below the provider. Provider staff are not seats, and a person
  who is a member of two tenants holds two seats, as contracts assign seats per
  tenant.

Nothing here ever hides, locks or deletes data: in every state conversations,
contacts and exports work; only adding tenants, seats and programs narrows.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app, g, has_app_context, has_request_context
from peewee import IntegrityError

from appliance.core import clock
from appliance.core.identity import ID_FILE, IdentityError, load_identity
from appliance.core.licence.format import (
    Licence,
    LicenceError,
    format_timestamp,
    verify_licence,
)
from appliance.core.licence.programs import PROGRAM_TITLES
from appliance.core.licence.state import (
    CLOCK_TOLERANCE,
    DEGRADED,
    EVALUATION_ENDED,
    EVALUATION_PROGRAMS,
    MARK_PERSIST_STEP,
    NOT_YET_VALID,
    ClockGuard,
    FileMark,
    LicenceState,
    Message,
    binding_problem,
    evaluate,
    mark_key,
    mark_mac,
)
from appliance.core.licence.trust import TrustStore
from appliance.web.db import database_proxy
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow as naive_utcnow
from appliance.web.models.licence import InstalledLicence, LicenceClock, TenantProgram
from appliance.web.models.tenancy import PROVIDER, ROLES, Membership, Tenant
from appliance.web.services import Conflict, ServiceError

log = logging.getLogger("appliance.web.services.licence")

# Channel kinds (appliance.web.models.contact_center.CHANNEL_KINDS) and the program each needs.
CHANNEL_PROGRAMS = {"webchat": "webchat", "email": "email", "webhook": "messengers", "telegram": "messengers",
                    "whatsapp": "messengers", "vk": "messengers", "viber": "messengers"}
MARK_FILE = "licence/clock-mark.json"
# The clock marks and the evaluation start are MACed with a key derived from the
# installation's private key (keys/installation.key): whoever can edit the database
# and the mark file but cannot read that key cannot forge them.
MARK_KEY_PURPOSE = "licence-clock"
# Marks missing on a database whose data is older than this: deleted, not a new install.
MISSING_MARK_AGE = timedelta(days=1)



class LicenceLimitError(ServiceError):
    """The licence (or the tenant's programs) does not allow this; the message says which limit."""

    status = 403

    def __init__(self, message: str, limit: str):
        super().__init__(message)
        self.limit = limit


def utcnow() -> datetime:
    return clock.now()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


# -- the clock mark in the database ----------------------------------------------------


class DatabaseMark:
    """The database copy of the mark, shared by every app host of the installation."""

    name = "the database"

    def __init__(self, key: bytes, installation_id: str):
        self.key = key
        self.installation_id = installation_id

    def load(self):
        row = LicenceClock.get_or_none(LicenceClock.id == 1)
        if row is None or row.high_water is None:
            return None
        return row.high_water, row.high_water_mac or ""

    def save(self, value: str, mac: str) -> None:
        # Only ever forward: a host with a slower clock must not lower a verified
        # mark another host has just written. Compare-and-swap on the old value,
        # so a concurrent writer wins cleanly and the loser retries next request.
        row = LicenceClock.get_or_none(LicenceClock.id == 1)
        if row is None:
            return
        old = row.high_water
        if old is not None and old >= value and hmac.compare_digest(
            mark_mac(self.key, self.installation_id, old), row.high_water_mac or ""
        ):
            return
        same_old = LicenceClock.high_water.is_null() if old is None else LicenceClock.high_water == old
        LicenceClock.update(high_water=value, high_water_mac=mac).where(LicenceClock.id == 1, same_old).execute()


# -- the service ---------------------------------------------------------------------------


class LicenceService:
    """Licences of one instance: needs its home (mark file, installation id) and session key."""

    def __init__(self, instance, secret: bytes, trust: TrustStore | None = None):
        self.instance = instance
        self.secret = secret
        self.trust = trust if trust is not None else TrustStore.load()
        self._verified: dict[str, Licence] = {}
        self._noted: dict[str, datetime] = {}
        self._installation_id: str | None = None
        self._cached: _Cached | None = None

    @classmethod
    def for_app(cls, app) -> LicenceService:
        found = app.extensions.get("licence")
        if found is None:
            found = cls(app.extensions["appliance_instance"], _secret_bytes(app.config["SECRET_KEY"]))
            app.extensions["licence"] = found
        return found

    @classmethod
    def for_instance(cls, instance) -> LicenceService:
        path = instance.path(instance["secret_key_file"])
        try:
            secret = path.read_bytes().strip()
        except FileNotFoundError as exc:
            raise ServiceError(f"The session key {path} is missing: run 'appliance init' first.", 500) from exc
        return cls(instance, secret)

    # identity and clock

    def installation_id(self) -> str:
        """The id a licence may be bound to: the installation identity's id when there is one."""
        if self._installation_id:
            return self._installation_id
        id_file = self.instance.path(ID_FILE)
        try:
            self._installation_id = str(uuid.UUID(id_file.read_text(encoding="ascii").strip()))
            return self._installation_id
        except (OSError, ValueError):
            # No identity file (a bare test instance): a random id kept in the database.
            return self.clock_row().installation_id

    def _identity(self):
        if not hasattr(self, "_identity_cache"):
            try:
                self._identity_cache = load_identity(self.instance)
            except IdentityError:
                self._identity_cache = None  # a bare instance without keys: the session key's MAC
        return self._identity_cache

    def installation_key(self) -> str | None:
        """The installation's public-key fingerprint, which a licence may be bound to."""
        identity = self._identity()
        return identity.fingerprint() if identity else None

    def mark_key(self) -> bytes:
        identity = self._identity()
        return identity.derive_key(MARK_KEY_PURPOSE) if identity else mark_key(self.secret)

    def clock_row(self) -> LicenceClock:
        row = LicenceClock.get_or_none(LicenceClock.id == 1)
        if row is None:
            started = naive_utcnow()
            try:
                row = LicenceClock.create(id=1, installation_id=str(uuid.uuid4()), evaluation_started_at=started,
                                          evaluation_mac=self.evaluation_mac(started))
            except IntegrityError:  # another worker created it first
                row = LicenceClock.get_by_id(1)
        elif row.evaluation_mac is None:
            # Kept by a release before the MAC: sealed now, as it stands (the data's age still caps it).
            row.evaluation_mac = self.evaluation_mac(row.evaluation_started_at)
            LicenceClock.update(evaluation_mac=row.evaluation_mac).where(
                LicenceClock.id == 1, LicenceClock.evaluation_mac.is_null()).execute()
        return row

    def evaluation_mac(self, started: datetime) -> str:
        text = f"appliance-evaluation-start\x00{self.installation_id_for_mac()}\x00{started.isoformat()}"
        return hmac.new(self.mark_key(), text.encode(), "sha256").hexdigest()

    def installation_id_for_mac(self) -> str:
        identity = self._identity()
        return identity.installation_id if identity else "no-identity"

    def evaluation_start(self, row: LicenceClock, problems: list) -> datetime:
        """When the evaluation started: the MACed value, never later than the oldest data.

        A row deleted (recreated now) or edited to a later date would restart the
        evaluation; the database's own oldest records say when it really began.
        """
        started = row.evaluation_started_at
        if not hmac.compare_digest(row.evaluation_mac or "", self.evaluation_mac(started)):
            problems.append(Message("error", "The evaluation start date was edited in the database; it is "
                                             "counted from the oldest data instead."))
        oldest = _oldest_data()
        if oldest is not None and oldest < started:
            started = oldest
        return _aware(started)

    def guard(self) -> ClockGuard:
        key, installation = self.mark_key(), self.installation_id()
        sources = [DatabaseMark(key, installation), FileMark(self.instance.path(MARK_FILE))]
        legacy = [mark_key(self.secret)] if self._identity() else []
        return ClockGuard(sources, key, installation, legacy_keys=legacy)

    # licences

    def verify(self, text: str) -> Licence:
        return verify_licence(text, self.trust)

    def stored_licences(self) -> tuple[list[Licence], list[Message]]:
        """Every installed licence verified again now; ones that fail are reported, not used."""
        licences, problems = [], []
        for row in InstalledLicence.select().order_by(InstalledLicence.id):
            licence = self._verified.get(row.text)
            if licence is None:
                try:
                    licence = self.verify(row.text)
                except LicenceError as exc:
                    problems.append(Message("error", f"Installed licence {row.licence_id} is ignored: {exc}"))
                    continue
                self._verified[row.text] = licence
            licences.append(licence)
        return licences, problems

    def state(self, now: datetime | None = None) -> LicenceState:
        now = now or utcnow()
        row = self.clock_row()
        reading = self.guard().observe(now)
        high_water = reading.high_water
        if reading.missing:
            high_water, missing_problem = _missing_marks(now)
            if missing_problem:
                reading.problems.append(missing_problem)
        own_problems: list[Message] = []
        installed_at = self.evaluation_start(row, own_problems)
        reading.problems.extend(own_problems)
        for problem in reading.problems:
            # Once an hour per problem: a read-only mark file would otherwise log every request.
            if self._first_in_an_hour(problem.text, now):
                log.warning("licence clock: %s", problem.text)
                if problem.level == "error":
                    _audit("licence.clock_mark_invalid", detail=problem.text[:200])
        licences, problems = self.stored_licences()
        state = evaluate(
            licences,
            now=now,
            installed_at=installed_at,
            installation_id=self.installation_id(),
            installation_key=self.installation_key(),
            high_water=high_water,
            profile=self.instance["profile"],
            extra_messages=reading.problems + problems,
            trust_non_production=self.trust.non_production_in_use,
        )
        if state.clock_rollback and self._first_in_an_hour("rollback", now):
            log.warning("licence clock: system clock is behind the high-water mark")
            _audit("licence.clock_rollback", clock=format_timestamp(now),
                   high_water=format_timestamp(high_water))
        return state

    def cached_state(self, recheck_seconds: float, now: datetime | None = None) -> LicenceState:
        """``state()``, kept by this process while nothing it depends on changed.

        Evaluating reads the clock row, both copies of the mark (one a file), the oldest
        data and every installed licence: far too much for every request. The kept state
        is used while (by the app's clock) it is under a minute old, the step by which
        the mark moves (so a busy process still writes the mark once a minute, and the
        worker's job does on an idle one); its generation, one row of the licence
        tables read in one statement, is compared again after ``recheck_seconds``. A
        licence installed or a mark moved by any process changes that generation; one
        installed by this process forgets the kept state at once.
        """
        now = now or utcnow()
        kept = self._cached
        if kept is not None and kept.at <= now < kept.at + MARK_PERSIST_STEP:
            if now < kept.checked + timedelta(seconds=recheck_seconds):
                return kept.state
            generation = _generation()
            if generation == kept.generation:
                self._cached = _Cached(kept.state, generation, kept.at, now)
                return kept.state
        generation = _generation()  # before evaluating: a change during it is seen next time
        state = self.state(now)
        self._cached = _Cached(state, generation, now, now)
        return state

    def forget(self) -> None:
        self._cached = None

    def _first_in_an_hour(self, key: str, now: datetime) -> bool:
        last = self._noted.get(key)
        if last is not None and timedelta(0) <= now - last < timedelta(hours=1):
            return False
        self._noted[key] = now
        return True

    def install(self, text: str, actor_id: int | None = None, now: datetime | None = None) -> tuple[Licence, bool]:
        """Verify and store a licence; returns (licence, newly installed).

        Refused (LicenceError, with the reason) when the signature or payload is
        wrong, the licence is bound to another installation, or it has run out.
        """
        try:
            licence = self.verify(text)
        except LicenceError as exc:
            _audit("licence.rejected", actor_id=actor_id, reason=exc.reason)
            raise
        installation = self.installation_id()
        if licence.installation_id is not None and licence.installation_id != installation:
            _audit("licence.rejected", actor_id=actor_id, reason="installation", licence_id=licence.licence_id)
            raise LicenceError(
                f"Licence {licence.licence_id} is for installation {licence.installation_id}, but this is "
                f"installation {installation}. Send this installation id to the vendor for a licence.",
                "installation",
            )
        problem = binding_problem(licence, self.installation_key())
        if problem:
            _audit("licence.rejected", actor_id=actor_id, reason="installation_key", licence_id=licence.licence_id)
            raise LicenceError(f"{problem} Send this installation's key fingerprint to the vendor "
                               "('appliance sync identity').", "installation")
        state_now = max(now or utcnow(), self.state(now).effective_now)
        if licence.grace_ends_at <= state_now:
            _audit("licence.rejected", actor_id=actor_id, reason="expired", licence_id=licence.licence_id)
            raise LicenceError(
                f"Licence {licence.licence_id} expired on {format_timestamp(licence.expires_at)} and its grace "
                f"period ended on {format_timestamp(licence.grace_ends_at)}; ask the vendor for a current one.",
                "expired",
            )
        existing = InstalledLicence.get_or_none(InstalledLicence.fingerprint == licence.fingerprint)
        if existing is not None:
            return licence, False
        self.store(licence, actor_id)
        return licence, True

    def store(self, licence: Licence, actor_id: int | None = None) -> InstalledLicence:
        """Keep a verified licence (no date checks: tests use it to set up expired states)."""
        row = InstalledLicence.create(
            fingerprint=licence.fingerprint,
            licence_id=licence.licence_id,
            key_id=licence.key_id,
            customer=licence.customer,
            valid_from=_naive(licence.valid_from),
            expires_at=_naive(licence.expires_at),
            text=licence.text,
            installed_by=actor_id,
        )
        _audit("licence.install", actor_id=actor_id, licence_id=licence.licence_id,
               fingerprint=licence.fingerprint, production_key=licence.production)
        _forget_state()
        return row

    def history(self) -> list[dict]:
        rows = InstalledLicence.select().order_by(InstalledLicence.installed_at.desc(), InstalledLicence.id.desc())
        return [
            {
                "licence_id": r.licence_id,
                "customer": r.customer,
                "valid_from": r.valid_from.isoformat() + "Z",
                "expires_at": r.expires_at.isoformat() + "Z",
                "key_id": r.key_id,
                "fingerprint": r.fingerprint,
                "installed_at": r.installed_at.isoformat() + "Z",
                "installed_by": r.installed_by_id,
            }
            for r in rows
        ]

    def report(self, now: datetime | None = None) -> dict:
        """Everything the licence page, ``licence show --json`` and the API show."""
        state = self.state(now)
        data = state.to_dict()
        data["installation_id"] = self.installation_id()
        data["usage"] = usage()
        data["history"] = self.history()
        keys = sorted(self.trust.keys.values(), key=lambda k: k.key_id)
        data["trust_roots"] = [{"key_id": k.key_id, "production": k.production} for k in keys]
        return data


@dataclass(frozen=True)
class _Cached:
    state: LicenceState
    generation: tuple | None
    at: datetime  # evaluated at (app clock)
    checked: datetime  # generation last compared at


def _generation() -> tuple | None:
    """Everything stored that the state depends on and that changes, in one statement."""
    cursor = database_proxy.execute_sql(
        "SELECT c.installation_id, c.evaluation_started_at, c.evaluation_mac, c.high_water, c.high_water_mac, "
        "(SELECT COUNT(*) FROM installed_licence), (SELECT MAX(id) FROM installed_licence) "
        "FROM licence_clock c WHERE c.id = 1")
    row = cursor.fetchone()
    return tuple(row) if row is not None else None


def _latest_data() -> datetime | None:
    """The newest time the database itself records (the newest audit event and message)."""
    from appliance.web.models.audit import AuditEvent
    from appliance.web.models.contact_center import Message as ChatMessage

    times = [row.at for row in AuditEvent.select(AuditEvent.at).order_by(AuditEvent.id.desc()).limit(1)]
    times += [row.created_at for row in
              ChatMessage.select(ChatMessage.created_at).order_by(ChatMessage.id.desc()).limit(1)]
    return max(times) if times else None


def _oldest_data() -> datetime | None:
    """The oldest time the database records (its first tenant and first audit event)."""
    from appliance.web.models.audit import AuditEvent

    times = [row.created_at for row in Tenant.select(Tenant.created_at).order_by(Tenant.id).limit(1)]
    times += [row.at for row in AuditEvent.select(AuditEvent.at).order_by(AuditEvent.id).limit(1)]
    return min(times) if times else None


def _missing_marks(now: datetime) -> tuple[datetime | None, Message | None]:
    """Every copy of the mark is gone: the worst the data shows, and a warning unless it is new.

    A new installation has no mark yet and only fresh data. Old data, or data from
    the future, without a mark means the marks were deleted: the newest time the
    data records stands in for the mark, so deleting both copies gains nothing.
    """
    latest, oldest = _latest_data(), _oldest_data()
    if latest is None:
        return None, None
    latest = _aware(latest)
    if latest <= now + CLOCK_TOLERANCE and (oldest is None or _aware(oldest) > now - MISSING_MARK_AGE):
        return latest, None
    return latest, Message("error", "The clock high-water mark is missing from both the database and "
                                    f"{MARK_FILE} although the database holds data up to {_day(latest)}: "
                                    "treated as tampering; licence dates count from that day.")


def _day(value: datetime) -> str:
    return _aware(value).strftime("%Y-%m-%d")


def _secret_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _audit(action: str, actor_id=None, **details) -> None:
    try:
        record(action, actor_id=actor_id, target="licence", **details)
    except Exception:  # the audit trail must never block licence checks
        log.exception("could not record %s", action)


# -- per-request access ----------------------------------------------------------------


def service() -> LicenceService:
    return LicenceService.for_app(current_app)


def current_state() -> LicenceState:
    """The state for this request: once per request, from the process's kept state.

    Tests change licence rows and mark files behind the app's back and expect the next
    request to see it: under TESTING the generation is compared on every request (the
    kept state is still used), where production compares it every few seconds.
    """
    if has_request_context():
        cached = g.get("_licence_state")
        if cached is None:
            recheck = 0 if current_app.config.get("TESTING") else float(
                current_app.extensions["appliance_instance"]["licence_state_recheck_seconds"])
            cached = service().cached_state(recheck)
            g._licence_state = cached
        return cached
    return service().state()


def _forget_state() -> None:
    if has_app_context() and "licence" in current_app.extensions:
        current_app.extensions["licence"].forget()
    if has_request_context():
        g.pop("_licence_state", None)


# -- counting ------------------------------------------------------------------------------


def tenant_count() -> int:
    return Tenant.select().where(Tenant.level != PROVIDER, Tenant.is_active == True).count()


def seat_count() -> int:
    return (
        Membership.select()
        .join(Tenant)
        .where(Tenant.level != PROVIDER, Tenant.is_active == True, Membership.role.in_(ROLES))
        .count()
    )


def usage() -> dict:
    per_program: dict[str, int] = {}
    for row in TenantProgram.select(TenantProgram.program):
        per_program[row.program] = per_program.get(row.program, 0) + 1
    return {"tenants": tenant_count(), "seats": seat_count(), "program_assignments": per_program}


# -- checks ----------------------------------------------------------------------------------


def _why_no_growth(state: LicenceState) -> str:
    if state.status == EVALUATION_ENDED:
        return f"the evaluation ended on {format_timestamp(state.evaluation_ends_at)} and no licence is installed"
    if state.status == NOT_YET_VALID and state.pending is not None:
        return (
            f"licence {state.pending.licence_id} is not valid until {format_timestamp(state.pending.valid_from)} "
            "and the evaluation has ended"
        )
    if state.status == DEGRADED and state.licence is not None:
        return (
            f"licence {state.licence.licence_id} expired on {format_timestamp(state.licence.expires_at)} and its "
            f"grace period ended on {format_timestamp(state.licence.grace_ends_at)}"
        )
    return state.title.lower()


def _refuse_if_frozen(state: LicenceState, what: str, limit: str) -> None:
    if not state.can_grow:
        raise LicenceLimitError(
            f"No {what} can be added: {_why_no_growth(state)}. Existing data and conversations stay "
            "available; install a current licence to add more.",
            limit,
        )


def check_can_create_tenant() -> None:
    state = current_state()
    _refuse_if_frozen(state, "tenants", "max_tenants")
    used, limit = tenant_count(), state.limits.max_tenants
    if used >= limit:
        source = "evaluation" if state.licence is None else f"licence {state.licence.licence_id}"
        raise LicenceLimitError(
            f"Licence limit reached: maximum tenants is {limit} for the {source} ({used} in use; accounts "
            "and sub-accounts below the provider count). Deactivate a tenant or ask the vendor for a "
            "licence with more tenants.",
            "max_tenants",
        )


def check_can_add_seat(tenant) -> None:
    """Memberships at the provider are staff, not operator seats, and are never limited."""
    if tenant is None or tenant.level == PROVIDER:
        return
    state = current_state()
    _refuse_if_frozen(state, "operator seats", "max_seats")
    used, limit = seat_count(), state.limits.max_seats
    if used >= limit:
        source = "evaluation" if state.licence is None else f"licence {state.licence.licence_id}"
        raise LicenceLimitError(
            f"Licence limit reached: maximum operator seats is {limit} for the {source} ({used} in use; "
            "each membership at an account or sub-account is a seat). Remove a membership or ask the "
            "vendor for a licence with more seats.",
            "max_seats",
        )
    for check in _seat_checks():
        check(tenant)


def _seat_checks():
    """Further caps on seats registered by other parts of the app (a contract's seats)."""
    return current_app.extensions.get("seat_checks", ()) if has_app_context() else ()


def check_can_assign_program(tenant, program: str) -> None:
    if tenant.level == PROVIDER:
        raise ServiceError("The provider has every licensed program; assign programs to accounts.", 422)
    state = current_state()
    _refuse_if_frozen(state, "programs", "programs")
    if program not in state.limits.programs:
        raise LicenceLimitError(
            f"The licence does not include the '{program}' program (licensed programs: "
            f"{', '.join(state.limits.programs) or 'none'}).",
            "programs",
        )


def parse_when(text: str | None, name: str = "effective_from") -> datetime | None:
    """``2027-01-31`` or ``2027-01-31T09:00:00Z`` (UTC); None for empty."""
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ServiceError(f"{name} must be a date like 2027-01-31 or 2027-01-31T09:00:00Z.", 422)


def assign_program(tenant, program: str, *, effective_from: datetime | None = None, actor_id=None) -> TenantProgram:
    check_can_assign_program(tenant, program)
    if TenantProgram.select().where(TenantProgram.tenant == tenant.id, TenantProgram.program == program).exists():
        raise Conflict(f"{tenant.name} has the '{program}' program already.")
    row = TenantProgram.create(
        tenant=tenant,
        program=program,
        effective_from=_naive(effective_from or utcnow()),
        assigned_by=actor_id,
    )
    _audit("program.assign", actor_id=actor_id, tenant=tenant.id, program=program)
    return row


def unassign_program(tenant, program: str, *, actor_id=None) -> bool:
    """Taking a program away is always allowed (it frees nothing and adds nothing)."""
    deleted = (
        TenantProgram.delete()
        .where(TenantProgram.tenant == tenant.id, TenantProgram.program == program)
        .execute()
    )
    if deleted:
        _audit("program.unassign", actor_id=actor_id, tenant=tenant.id, program=program)
    return bool(deleted)


def tenant_programs(tenant, state: LicenceState | None = None) -> set[str]:
    """Programs the tenant may use now.

    Without a licence in effect (evaluation, or its end) every evaluation program is
    open to every tenant, so evaluators can try everything and nothing they built
    stops working when the evaluation ends. With a licence, a tenant has the
    programs assigned to it or to its account (in effect from their date) that the
    licence includes; the provider has all licensed programs.
    """
    state = state or current_state()
    licensed = set(state.limits.programs)
    if state.licence is None:
        return set(EVALUATION_PROGRAMS)
    if tenant.level == PROVIDER:
        return licensed
    rows = TenantProgram.select(TenantProgram.program).join(Tenant).where(
        TenantProgram.tenant.in_(set(tenant.ancestor_ids()) | {tenant.id}),
        Tenant.level != PROVIDER,
        TenantProgram.effective_from <= _naive(state.effective_now),
    )
    return {r.program for r in rows} & licensed


def require_program(tenant, program: str) -> None:
    state = current_state()
    if program in tenant_programs(tenant, state):
        return
    title = PROGRAM_TITLES.get(program, program)
    if program not in state.limits.programs:
        reason = f"the licence does not include the '{program}' program"
    else:
        pending = TenantProgram.get_or_none(TenantProgram.tenant == tenant.id, TenantProgram.program == program)
        if pending is not None:
            reason = f"the '{program}' program starts on {pending.effective_from:%Y-%m-%d %H:%M} UTC"
        else:
            reason = f"the '{program}' program is not assigned to {tenant.name}; the provider can assign it"
    raise LicenceLimitError(f"{title} is not available to {tenant.name}: {reason}.", "program:" + program)


def require_program_for_channel(tenant, kind: str) -> None:
    program = CHANNEL_PROGRAMS.get(kind)
    if program:
        require_program(tenant, program)


def banner() -> Message | None:
    """The message every page shows, or None (never raises: a page must render regardless)."""
    if not has_app_context():
        return None
    try:
        return current_state().banner
    except Exception:
        log.exception("licence state unavailable")
        return None


def licence_clock_job(app) -> None:
    """Worker job: evaluate the licence so the clock mark advances even when no one is logged in.

    An idle appliance would otherwise only learn the time at the next request, and a
    clock set back in between would go unnoticed for that stretch.
    """
    LicenceService.for_app(app).state()
