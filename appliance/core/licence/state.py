"""What the installed licences allow right now, and a clock that cannot be wound back.

The evaluation is a pure function of the installed licences, the installation,
and the time (:func:`evaluate`), so every state can be tested by passing a time.
Storage (database rows, the mark file) is the caller's business; this module
only says how a high-water mark is protected (:class:`ClockGuard`).

The rule that shapes every state: a licence narrows what can be *added*
(tenants, operator seats, programs). It never hides, locks or deletes data, and
never stops agents answering conversations.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.core import clock
from appliance.core.licence.format import Licence, format_timestamp, parse_timestamp
from appliance.core.licence.programs import KNOWN_PROGRAMS

EVALUATION_DAYS = 30
# Enough for `appliance demo` and a proof of concept (6 tenants, 9 seats), small
# enough that production needs a licence.
EVALUATION_MAX_TENANTS = 10  # tenants below the provider (accounts and sub-accounts)
EVALUATION_MAX_SEATS = 25
EVALUATION_PROGRAMS = KNOWN_PROGRAMS  # an evaluation should be able to try everything
EXPIRING_SOON_DAYS = 30
# Hosts of one appliance share the database mark but not their clocks; NTP keeps
# them within seconds, so only a larger gap is reported as a rollback.
CLOCK_TOLERANCE = timedelta(minutes=15)
# Advance the stored mark at most this often, not on every request.
MARK_PERSIST_STEP = timedelta(minutes=1)

EVALUATION = "evaluation"
EVALUATION_ENDED = "evaluation_ended"
NOT_YET_VALID = "not_yet_valid"
VALID = "valid"
EXPIRING_SOON = "expiring_soon"
GRACE = "grace"
DEGRADED = "degraded"

STATUS_TITLES = {
    EVALUATION: "Evaluation mode",
    EVALUATION_ENDED: "Evaluation ended",
    NOT_YET_VALID: "Licence not yet valid",
    VALID: "Licensed",
    EXPIRING_SOON: "Licence expiring soon",
    GRACE: "Licence expired: grace period",
    DEGRADED: "Licence expired: limited mode",
}


def utcnow() -> datetime:
    return clock.now()


@dataclass(frozen=True)
class Limits:
    max_tenants: int
    max_seats: int
    programs: tuple[str, ...]
    profiles: tuple[str, ...] | None  # None: any profile

    def to_dict(self) -> dict:
        return {
            "max_tenants": self.max_tenants,
            "max_seats": self.max_seats,
            "programs": list(self.programs),
            "profiles": None if self.profiles is None else list(self.profiles),
        }


EVALUATION_LIMITS = Limits(EVALUATION_MAX_TENANTS, EVALUATION_MAX_SEATS, EVALUATION_PROGRAMS, None)


@dataclass(frozen=True)
class Message:
    level: str  # "info", "warning", "error"
    text: str


@dataclass
class LicenceState:
    status: str
    can_grow: bool  # may tenants, seats and programs be added?
    limits: Limits
    licence: Licence | None
    pending: Licence | None
    now: datetime
    effective_now: datetime
    ends_at: datetime | None  # when what is allowed now narrows next
    evaluation_ends_at: datetime
    clock_rollback: bool = False
    non_production: bool = False
    messages: list[Message] = field(default_factory=list)

    @property
    def title(self) -> str:
        return STATUS_TITLES[self.status]

    @property
    def mode(self) -> str:
        return "licensed" if self.licence is not None else "evaluation"

    @property
    def days_left(self) -> int | None:
        if self.ends_at is None:
            return None
        seconds = (self.ends_at - self.effective_now).total_seconds()
        return max(0, math.ceil(seconds / 86400))

    @property
    def banner(self) -> Message | None:
        """What every page should show, or None when all is well."""
        if self.status == VALID and not self.clock_rollback and not self.non_production:
            return None
        worst = {"error": 0, "warning": 1, "info": 2}
        ranked = sorted(self.messages, key=lambda m: worst.get(m.level, 3))
        if not ranked:
            return None
        if len(ranked) == 1:
            return ranked[0]
        return Message(ranked[0].level, " ".join(m.text for m in ranked))

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "title": self.title,
            "mode": self.mode,
            "can_grow": self.can_grow,
            "limits": self.limits.to_dict(),
            "licence": self.licence.summary() if self.licence else None,
            "pending": self.pending.summary() if self.pending else None,
            "now": format_timestamp(self.now),
            "effective_now": format_timestamp(self.effective_now),
            "ends_at": format_timestamp(self.ends_at) if self.ends_at else None,
            "days_left": self.days_left,
            "evaluation_ends_at": format_timestamp(self.evaluation_ends_at),
            "clock_rollback": self.clock_rollback,
            "non_production_trust_root": self.non_production,
            "messages": [{"level": m.level, "text": m.text} for m in self.messages],
        }


def _day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def select_licences(licences: Sequence[Licence], effective_now: datetime) -> tuple[Licence | None, Licence | None]:
    """The licence in effect (the one that started last) and the next one to start."""
    started = [lic for lic in licences if lic.valid_from <= effective_now]
    future = [lic for lic in licences if lic.valid_from > effective_now]
    active = max(started, key=lambda lic: (lic.valid_from, lic.issued_at), default=None)
    pending = min(future, key=lambda lic: (lic.valid_from, lic.issued_at), default=None)
    return active, pending


def binding_problem(lic: Licence, installation_key: str | None) -> str | None:
    """Why ``lic`` is not for the installation holding the key ``installation_key`` (None: it is)."""
    if lic.installation_key is None or lic.installation_key == installation_key:
        return None
    return (f"Licence {lic.licence_id} is bound to the installation key {lic.installation_key}, but this "
            f"installation's key is {installation_key or 'missing'}.")


def evaluate(
    licences: Sequence[Licence],
    *,
    now: datetime,
    installed_at: datetime,
    installation_id: str,
    installation_key: str | None = None,
    high_water: datetime | None = None,
    profile: str | None = None,
    extra_messages: Sequence[Message] = (),
    trust_non_production: bool = False,
) -> LicenceState:
    """The licence state at ``now``, never earlier than the clock high-water mark."""
    messages: list[Message] = list(extra_messages)
    rollback = high_water is not None and now < high_water - CLOCK_TOLERANCE
    effective_now = max(now, high_water) if high_water is not None else now
    if rollback:
        messages.append(
            Message(
                "error",
                f"The system clock ({_day(now)}) is behind the latest time this appliance has "
                f"seen ({_day(high_water)}). Licence dates are counted from {_day(high_water)}; "
                "setting the clock back does not extend a licence. Fix the clock (NTP).",
            )
        )

    usable = []
    for lic in licences:
        if lic.installation_id is not None and lic.installation_id != installation_id:
            messages.append(
                Message(
                    "error",
                    f"Licence {lic.licence_id} is for installation {lic.installation_id}, not this "
                    f"one ({installation_id}); it is ignored.",
                )
            )
            continue
        if binding_problem(lic, installation_key):
            messages.append(Message("error", binding_problem(lic, installation_key) + " It is ignored."))
            continue
        usable.append(lic)

    evaluation_ends_at = installed_at + timedelta(days=EVALUATION_DAYS)
    active, pending = select_licences(usable, effective_now)
    non_production = trust_non_production or any(not lic.production for lic in usable)

    if active is None:
        running = effective_now < evaluation_ends_at
        if pending is not None:
            status = NOT_YET_VALID
            lead = f"Licence {pending.licence_id} becomes valid on {_day(pending.valid_from)}."
            if running:
                tail = f" Until then the appliance runs in evaluation mode, which ends on {_day(evaluation_ends_at)}."
            else:
                tail = " Until then no tenants, operator seats or programs can be added; all data stays available."
            messages.insert(0, Message("warning", lead + tail))
        elif running:
            status = EVALUATION
            messages.insert(
                0,
                Message(
                    "warning",
                    f"Evaluation mode: no licence installed. Up to {EVALUATION_MAX_TENANTS} tenants and "
                    f"{EVALUATION_MAX_SEATS} operator seats until {_day(evaluation_ends_at)}.",
                ),
            )
        else:
            status = EVALUATION_ENDED
            messages.insert(
                0,
                Message(
                    "error",
                    f"The evaluation ended on {_day(evaluation_ends_at)}. No tenants, operator seats or "
                    "programs can be added until a licence is installed; agents keep working and all "
                    "data stays readable and exportable.",
                ),
            )
        state = LicenceState(
            status=status,
            can_grow=running,
            limits=EVALUATION_LIMITS,
            licence=None,
            pending=pending,
            now=now,
            effective_now=effective_now,
            ends_at=evaluation_ends_at if running else None,
            evaluation_ends_at=evaluation_ends_at,
            clock_rollback=rollback,
            non_production=non_production,
            messages=messages,
        )
    else:
        limits = Limits(active.max_tenants, active.max_seats, active.programs, active.profiles)
        soon = active.expires_at - timedelta(days=EXPIRING_SOON_DAYS)
        if effective_now < soon:
            status, can_grow, ends_at = VALID, True, active.expires_at
        elif effective_now < active.expires_at:
            status, can_grow, ends_at = EXPIRING_SOON, True, active.expires_at
            messages.insert(
                0,
                Message(
                    "warning",
                    f"The licence for {active.customer} expires on {_day(active.expires_at)}. "
                    "Ask the vendor for a renewal.",
                ),
            )
        elif effective_now < active.grace_ends_at:
            status, can_grow, ends_at = GRACE, True, active.grace_ends_at
            messages.insert(
                0,
                Message(
                    "warning",
                    f"The licence expired on {_day(active.expires_at)}. Everything keeps working during "
                    f"the grace period until {_day(active.grace_ends_at)}; after that no tenants, "
                    "operator seats or programs can be added. Install a renewed licence.",
                ),
            )
        else:
            status, can_grow, ends_at = DEGRADED, False, None
            messages.insert(
                0,
                Message(
                    "error",
                    f"The licence expired on {_day(active.expires_at)} and its grace period ended on "
                    f"{_day(active.grace_ends_at)}. No tenants, operator seats or programs can be "
                    "added; agents keep answering and all data stays readable and exportable. "
                    "Install a renewed licence.",
                ),
            )
        if pending is not None:
            messages.append(
                Message("info", f"Licence {pending.licence_id} takes effect on {_day(pending.valid_from)}.")
            )
        if profile and profile not in active.profiles:
            messages.append(
                Message(
                    "warning",
                    f"This appliance runs the '{profile}' profile, which licence {active.licence_id} "
                    f"does not cover ({', '.join(active.profiles) or 'none'}). Ask the vendor to "
                    "add it.",
                )
            )
        state = LicenceState(
            status=status,
            can_grow=can_grow,
            limits=limits,
            licence=active,
            pending=pending,
            now=now,
            effective_now=effective_now,
            ends_at=ends_at,
            evaluation_ends_at=evaluation_ends_at,
            clock_rollback=rollback,
            non_production=non_production,
            messages=messages,
        )
    if non_production:
        state.messages.append(
            Message(
                "warning",
                "A non-production trust root is in use (APPLIANCE_LICENCE_TRUST_ROOT): licences "
                "signed by test or engineering keys are accepted. Do not use this in production.",
            )
        )
    return state


# -- clock high-water mark ----------------------------------------------------


def mark_key(secret: bytes) -> bytes:
    """A key for the mark's MAC, derived so the instance secret itself is never reused raw."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"appliance licence clock high-water mark v1"
    ).derive(secret)


def mark_mac(key: bytes, installation_id: str, value: str) -> str:
    message = f"appliance-clock-mark\x00{installation_id}\x00{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


class MarkSource(Protocol):
    """One place the mark is kept: ``load() -> (value, mac) | None`` and ``save(value, mac)``."""

    name: str

    def load(self) -> tuple[str, str] | None: ...

    def save(self, value: str, mac: str) -> None: ...


class FileMark:
    """The mark in a small JSON file on this host (the database keeps the other copy)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = f"file {self.path}"

    def load(self) -> tuple[str, str] | None:
        try:
            data = json.loads(self.path.read_text())
            return str(data["high_water"]), str(data["mac"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return ("", "")  # present but unreadable: reported as damaged

    def save(self, value: str, mac: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"high_water": value, "mac": mac}, fh)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@dataclass
class ClockReading:
    high_water: datetime | None  # the verified mark before this reading
    problems: list[Message]
    missing: bool = False  # no source held a mark at all (deleted, or a brand-new installation)


class ClockGuard:
    """Keeps the latest time seen, in every source, under a MAC bound to the installation.

    Lowering the mark is the only edit that could extend a licence, and the MAC
    catches it: a mark that fails verification is ignored and reported, then
    rewritten from the verified copies. Only verified values count.
    """

    def __init__(self, sources: Sequence[MarkSource], key: bytes, installation_id: str,
                 legacy_keys: Sequence[bytes] = ()):
        self.sources = list(sources)
        self.key = key
        self.installation_id = installation_id
        # Keys an older release MACed marks with: still believed once, then rewritten under ``key``.
        self.legacy_keys = list(legacy_keys)

    def _genuine(self, value: str, mac: str) -> tuple[bool, bool]:
        """(verifies, under the current key)."""
        if hmac.compare_digest(mark_mac(self.key, self.installation_id, value), mac):
            return True, True
        old = any(hmac.compare_digest(mark_mac(k, self.installation_id, value), mac) for k in self.legacy_keys)
        return old, False

    def observe(self, now: datetime, persist: bool = True) -> ClockReading:
        problems: list[Message] = []
        verified: list[datetime] = []
        stored: dict[int, datetime | None] = {}
        found = 0
        for i, source in enumerate(self.sources):
            record = source.load()
            stored[i] = None
            if record is None:
                continue
            found += 1
            value, mac = record
            good, current_key = self._genuine(value, mac)
            when = None
            if good:
                try:
                    when = parse_timestamp(value)
                except ValueError:
                    good = False
            if not good:
                problems.append(
                    Message(
                        "error",
                        f"The clock high-water mark in {source.name} was edited or damaged; it was "
                        "ignored and rewritten.",
                    )
                )
                continue
            stored[i] = when if current_key else None  # under an old key: rewrite it
            verified.append(when)
        high_water = max(verified) if verified else None
        if persist:
            newest = max(now, high_water) if high_water else now
            value = format_timestamp(newest)
            mac = mark_mac(self.key, self.installation_id, value)
            for i, source in enumerate(self.sources):
                current = stored[i]
                if current is None or current < newest - MARK_PERSIST_STEP:
                    try:
                        source.save(value, mac)
                    except Exception as exc:  # a read-only disk or database must not stop the app
                        problems.append(
                            Message("warning", f"Cannot keep the clock high-water mark in {source.name}: {exc}")
                        )
        return ClockReading(high_water, problems, missing=found == 0)
