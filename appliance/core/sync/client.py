"""The sender: queued reports go to the vendor in batches, never one call per event.

One ``run_once`` call claims up to a batch of due reports from an outbox, POSTs
them as one request with an ``Idempotency-Key`` that stays the same on every
retry of that batch, and records the outcome. The receiver drops a batch it has
already stored (by that key) and any report it already has (by report id), so a
retry after a lost answer, a timeout or a crash costs one more request, never a
duplicate row.

Three guards hold whatever happens:

* sync turned off, or locked off by the installer: ``run_once`` returns before
  any socket, session or DNS lookup is created;
* a fixed number of requests per UTC day (default 24), counted in the outbox's
  own storage so restarts and several app hosts share one budget;
* exponential backoff with jitter between attempts, so a vendor outage is met
  by a trickle of retries, not a storm from every installation at once.

The outbox is storage-agnostic (see :class:`Outbox`); the web app provides one
over its database (``appliance.web.sync.outbox``) whose claim is a database row lock.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import random
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from typing import Any, Protocol
from urllib.parse import urlsplit

from appliance.core import clock as core_clock
from appliance.core.sync.report import BATCH_FORMAT, canonical_json

log = logging.getLogger("appliance.core.sync")

REPORTS_PATH = "/api/v1/reports"
USER_AGENT = "contact-appliance-sync/1"
# Per-report answers the receiver may give. "unregistered" is retried (the vendor
# may register the key later); the other rejections are final: resending the
# same signed bytes cannot succeed.
FINAL_REJECTIONS = frozenset({"malformed", "unsigned", "bad_signature", "invalid"})
_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,39}$")


class SyncConfigError(ValueError):
    """The sync settings cannot be used (bad URL, plain HTTP to a remote host...)."""


@dataclass
class SyncSettings:
    """What the sender reads from the ``sync`` settings (their defaults: DEFAULTS in appliance.core.config)."""

    enabled: bool
    locked_off: bool
    vendor_url: str
    allow_http: bool
    ca_bundle: str | None
    max_requests_per_day: int
    max_reports_per_batch: int
    max_batches_per_run: int
    connect_timeout: float
    read_timeout: float
    backoff_base: float
    backoff_max: float

    @property
    def active(self) -> bool:
        return bool(self.enabled) and not self.locked_off

    @classmethod
    def from_config(cls, sync_cfg: dict, *, enabled: bool | None = None) -> SyncSettings:
        """Build from the resolved ``sync`` section (``Instance.load`` fills in every default);
        ``enabled`` (the admin's switch in the database) wins over the file's."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in sync_cfg]
        if missing:
            raise SyncConfigError(
                f"the sync settings lack {', '.join(missing)}: pass the 'sync' section of a loaded "
                "Instance, which has every key of DEFAULTS['sync'] in appliance/core/config.py"
            )
        values = {name: sync_cfg[name] for name in names}
        if enabled is not None:
            values["enabled"] = enabled
        return cls(**values)

    def endpoint(self) -> str:
        return reports_url(self.vendor_url, allow_http=self.allow_http)


def reports_url(vendor_url: str, *, allow_http: bool = False) -> str:
    """The POST URL for a vendor base URL; refuses what would leak or mislead."""
    if not vendor_url:
        raise SyncConfigError("sync.vendor_url is not set")
    parts = urlsplit(vendor_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SyncConfigError(f"sync.vendor_url must be an https:// URL (got {vendor_url!r})")
    if parts.username or parts.password:
        raise SyncConfigError("sync.vendor_url must not carry credentials")
    if parts.scheme == "http" and not allow_http and not _is_loopback(parts.hostname):
        raise SyncConfigError(
            "sync.vendor_url uses plain http to a remote host; use https "
            "(or set sync.allow_http for a lab)"
        )
    base = vendor_url.rstrip("/")
    return base if base.endswith(REPORTS_PATH) else base + REPORTS_PATH


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- outbox protocol


@dataclass
class OutboxItem:
    id: Any
    report_id: str
    envelope: dict


@dataclass
class Claim:
    """A batch this process may send now: the outbox holds its lock until settled."""

    key: str
    items: list[OutboxItem]
    attempts: int  # attempts made before this one


@dataclass
class Outcome:
    """What happened to a claimed batch; the outbox stores it."""

    sent: list[Any] = field(default_factory=list)  # item ids the receiver has (new or duplicate)
    failed: dict[Any, str] = field(default_factory=dict)  # item id -> final rejection reason
    retry: list[Any] = field(default_factory=list)  # item ids to try again
    next_attempt_at: dt.datetime | None = None
    error: str | None = None


class Outbox(Protocol):
    def claim(
        self, now: dt.datetime, *, max_items: int, max_requests_per_day: int
    ) -> AbstractContextManager[Claim | None]:
        """Lock and yield the next due batch (or None), counting one request against today.

        The same ``Claim.key`` must come back for the same items until they are
        settled, and two concurrent callers must never get the same batch.
        """

    def settle(self, claim: Claim, outcome: Outcome, now: dt.datetime) -> None:
        """Record the outcome; called inside the ``claim`` context."""


def new_batch_key() -> str:
    return str(uuid.uuid4())


def backoff_delay(attempts: int, base: float, cap: float, rng=random) -> float:
    """Exponential backoff with "equal jitter": never less than half the nominal delay."""
    nominal = min(cap, base * (2 ** max(0, attempts - 1)))
    return rng.uniform(nominal / 2, nominal)


# --------------------------------------------------------------------------- the sender


@dataclass
class RunResult:
    status: str  # disabled | idle | sent | retry | error
    requests: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    latest_version: str | None = None
    licence_installed: bool = False
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return self.__dict__.copy()


class SyncClient:
    def __init__(
        self,
        settings: SyncSettings,
        outbox: Outbox,
        *,
        session_factory: Callable[[], Any] | None = None,
        on_version: Callable[[str], None] | None = None,
        on_licence: Callable[[str], bool] | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        rng=random,
    ):
        self.settings = settings
        self.outbox = outbox
        self._session_factory = session_factory
        self.on_version = on_version
        self.on_licence = on_licence
        self.clock = clock or core_clock.naive_now
        self.rng = rng

    def _session(self):
        if self._session_factory is not None:
            return self._session_factory()
        import requests  # imported late: with sync off this module opens nothing at all

        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        session.trust_env = False  # no surprise proxies from the service environment
        if self.settings.ca_bundle:
            session.verify = self.settings.ca_bundle
        return session

    def run_once(self) -> RunResult:
        # The off switch is checked first, before a URL is parsed or a session made.
        if not self.settings.active:
            reason = "locked off by the installer" if self.settings.locked_off else "turned off"
            return RunResult(status="disabled", messages=[f"sync is {reason}"])
        try:
            url = self.settings.endpoint()
        except SyncConfigError as exc:
            # Reported (status, UI), not raised: the worker would log it every round.
            return RunResult(status="error", messages=[str(exc)])
        result = RunResult(status="idle")
        session = None
        try:
            for _ in range(max(1, self.settings.max_batches_per_run)):
                now = self.clock()
                with self.outbox.claim(
                    now,
                    max_items=self.settings.max_reports_per_batch,
                    max_requests_per_day=self.settings.max_requests_per_day,
                ) as claim:
                    if claim is None:
                        skip = getattr(self.outbox, "last_skip", None)
                        if skip and skip != "nothing due":
                            result.messages.append(skip)  # e.g. the daily limit is reached
                        break
                    if session is None:
                        session = self._session()
                    result.requests += 1
                    outcome = self._send(session, url, claim, result)
                    self.outbox.settle(claim, outcome, self.clock())
                result.sent += len(outcome.sent)
                result.failed += len(outcome.failed)
                result.retried += len(outcome.retry)
                if outcome.error:
                    result.messages.append(outcome.error)
                if outcome.retry:
                    result.status = "retry"
                    break  # the vendor is struggling: wait for the backoff, do not push on
                result.status = "sent"
        finally:
            if session is not None and hasattr(session, "close"):
                session.close()
        return result

    def _retry_all(self, claim: Claim, error: str, retry_after: float | None = None) -> Outcome:
        delay = backoff_delay(
            claim.attempts + 1, self.settings.backoff_base, self.settings.backoff_max, self.rng
        )
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.settings.backoff_max))
        return Outcome(
            retry=[item.id for item in claim.items],
            next_attempt_at=self.clock() + dt.timedelta(seconds=delay),
            error=error,
        )

    def _send(self, session, url: str, claim: Claim, result: RunResult) -> Outcome:
        import requests

        body = canonical_json(
            {
                "format": BATCH_FORMAT,
                "v": 1,
                "batch_id": claim.key,
                "reports": [item.envelope for item in claim.items],
            }
        )
        try:
            response = session.post(
                url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Idempotency-Key": claim.key,
                },
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                allow_redirects=False,
            )
        except requests.Timeout:
            return self._retry_all(claim, "the vendor did not answer in time")
        except requests.ConnectionError as exc:
            return self._retry_all(claim, f"cannot reach the vendor: {type(exc).__name__}")
        except requests.RequestException as exc:
            return self._retry_all(claim, f"request failed: {type(exc).__name__}")

        status = response.status_code
        if status == 429 or status == 503 or status >= 500 or status == 408:
            return self._retry_all(
                claim, f"the vendor answered HTTP {status}", _retry_after(response)
            )
        if status != 200:
            # 3xx/4xx: most likely a wrong URL or a proxy in the way. Keep the
            # reports and retry slowly; an admin sees the error on the sync page.
            return self._retry_all(claim, f"the vendor refused the batch: HTTP {status}")
        try:
            answer = response.json()
            results = answer["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (ValueError, KeyError, TypeError):
            return self._retry_all(claim, "the vendor's answer was not understood")

        by_report = {item.report_id: item for item in claim.items}
        outcome = Outcome()
        seen = set()
        for entry in results:
            if not isinstance(entry, dict):
                continue
            item = by_report.get(entry.get("report_id"))
            if item is None or item.id in seen:
                continue
            seen.add(item.id)
            state = entry.get("status")
            if state in ("stored", "duplicate"):
                outcome.sent.append(item.id)
            elif state == "rejected" and entry.get("code") in FINAL_REJECTIONS:
                outcome.failed[item.id] = f"{entry.get('code')}: {str(entry.get('reason'))[:200]}"
            else:
                outcome.retry.append(item.id)
        # Anything the answer did not mention is kept and retried, never assumed sent.
        outcome.retry.extend(item.id for item in claim.items if item.id not in seen)
        if outcome.retry:
            retry = self._retry_all(claim, "the vendor did not accept every report")
            outcome.next_attempt_at = retry.next_attempt_at
            outcome.error = "; ".join(
                str(e.get("reason")) for e in results if isinstance(e, dict) and e.get("status") == "rejected"
            )[:300] or retry.error

        self._apply_answer(answer, result)
        return outcome

    def _apply_answer(self, answer: dict, result: RunResult) -> None:
        version = answer.get("latest_version")
        if isinstance(version, str) and _VERSION_RE.match(version):
            result.latest_version = version
            if self.on_version:
                self.on_version(version)
        licence = answer.get("licence")
        if isinstance(licence, str) and licence.strip() and self.on_licence:
            try:
                result.licence_installed = bool(self.on_licence(licence))
            except Exception as exc:  # whatever it is, the batch outcome must still be recorded
                log.warning("licence from the vendor was not installed: %s", exc)
                result.messages.append(f"licence from the vendor was not installed: {exc}")


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def batch_preview(claim_items: list[dict], batch_id: str = "<assigned when sent>") -> str:
    """The batch body as it would be sent, pretty-printed for a person to read."""
    return json.dumps(
        {"format": BATCH_FORMAT, "v": 1, "batch_id": batch_id, "reports": claim_items},
        indent=2,
        sort_keys=True,
    )
