"""Sync on the appliance: settings, queueing, sending, preview, export, status.

Everything here needs a bound database (inside the app, the worker, or a CLI
command that binds it). Nothing here opens a network connection unless the
settings say sync is on and not locked off by the installer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging

from peewee import fn

import appliance
from appliance.core.calendar import zone
from appliance.core.identity import Identity, load_identity
from appliance.core.licence import LicenceError
from appliance.core.sync.client import RunResult, SyncClient, SyncConfigError, SyncSettings, batch_preview
from appliance.core.sync.report import (
    build_report,
    canonical_json,
    export_text,
    report_id_for,
    sign_report,
)
from appliance.web.db import database_proxy
from appliance.web.models.audit import AuditEvent, record
from appliance.web.models.base import utcnow
from appliance.web.models.sync import FAILED, PENDING, SENDING, SENT, SyncOutbox, SyncState
from appliance.web.services.licence import LicenceService
from appliance.web.sync.outbox import DatabaseOutbox
from appliance.web.sync.usage import usage_for_day

log = logging.getLogger("appliance.web.sync")

ENABLED = "enabled"
ENABLED_AT = "enabled_at"
LATEST_VERSION = "latest_version"
LATEST_VERSION_AT = "latest_version_at"
REFUSED_LICENCE = "vendor_licence_refused"
LICENCE_NOTE = "vendor_licence_note"
BACKFILL_DAYS = 7  # a worker down for a few days still reports those days


class SyncLockedOff(PermissionError):
    """The installer locked sync off; only the installer (Ansible) can change that."""


# --------------------------------------------------------------------------- state rows


def get_state(key: str, default=None):
    row = SyncState.get_or_none(SyncState.key == key)
    return row.value if row else default


def set_state(key: str, value: str) -> None:
    (
        SyncState.insert(key=key, value=value, updated_at=utcnow())
        .on_conflict(conflict_target=[SyncState.key], update={SyncState.value: value, SyncState.updated_at: utcnow()})
        .execute()
    )


def sync_config(instance) -> dict:
    """The ``sync`` section of the settings; DEFAULTS in appliance.core.config lists every key."""
    return instance["sync"]


def is_locked_off(instance) -> bool:
    return bool(sync_config(instance)["locked_off"])


def shares_tenant_names(instance) -> bool:
    return bool(sync_config(instance)["share_tenant_names"])


def is_enabled(instance) -> bool:
    """The admin's switch (database) over the installer's default (config), under the lock."""
    if is_locked_off(instance):
        return False
    stored = get_state(ENABLED)
    if stored is None:
        return bool(sync_config(instance)["enabled"])
    return stored == "1"


def settings_for(instance) -> SyncSettings:
    return SyncSettings.from_config(sync_config(instance), enabled=is_enabled(instance))


def set_enabled(instance, enabled: bool, *, actor_id=None, via: str = "ui") -> bool:
    """Turn sync on or off (an admin action, in the audit trail); returns True if it changed."""
    if enabled and is_locked_off(instance):
        raise SyncLockedOff("Sync is turned off by the installer; it cannot be turned on here.")
    before = is_enabled(instance)
    with database_proxy.atomic():
        set_state(ENABLED, "1" if enabled else "0")
        if enabled and not before:
            set_state(ENABLED_AT, utcnow().isoformat())
        record(
            "sync.enabled" if enabled else "sync.disabled",
            actor_id=actor_id,
            target="sync",
            via=via,
            changed=before != enabled,
        )
    return before != enabled


# --------------------------------------------------------------------------- reports


def build_day_report(instance, identity: Identity, first: dt.date, last: dt.date | None = None, now=None) -> dict:
    last = last or first
    names = shares_tenant_names(instance)
    days = []
    day = first
    while day <= last:
        days.append({"date": day.isoformat(), "tenants": usage_for_day(day, include_names=names,
                                                                       tz=zone(instance.settings))})
        day += dt.timedelta(days=1)
    return build_report(
        installation_id=identity.installation_id,
        version=appliance.__version__,
        profile=instance["profile"],
        days=days,
        generated_at=now,
        report_id=report_id_for(identity.installation_id, first, last),
        tenant_names=names,
        # Rows in the database, not the anchor's count: deleted rows are what the vendor
        # should be able to notice, and a damaged anchor must not stop usage reports.
        audit_entries=AuditEvent.select().count(),
    )


def signed_envelope(instance, identity: Identity, first: dt.date, last: dt.date | None = None, now=None) -> dict:
    report = build_day_report(instance, identity, first, last, now)
    return sign_report(report, identity, allow_names=shares_tenant_names(instance))


def enqueue_day(instance, day: dt.date, *, identity: Identity | None = None, now=None) -> bool:
    """Queue the signed report for ``day`` unless it is queued already (one row per day)."""
    if SyncOutbox.select().where(SyncOutbox.report_day == day).exists():
        return False
    identity = identity or load_identity(instance)
    envelope = signed_envelope(instance, identity, day, now=now)
    inserted = (
        SyncOutbox.insert(
            report_day=day,
            report_id=envelope["report"]["report_id"],
            payload=canonical_json(envelope).decode("ascii"),
            state=PENDING,
            next_attempt_at=now or utcnow(),
        )
        .on_conflict_ignore()  # another host queued it between our check and now
        .execute()
    )
    return bool(inserted)


def enqueue_due(instance, now: dt.datetime | None = None) -> list[dt.date]:
    """Queue finished days since sync was turned on (at most a week back)."""
    now = now or utcnow()
    yesterday = now.date() - dt.timedelta(days=1)
    first = yesterday - dt.timedelta(days=BACKFILL_DAYS - 1)
    enabled_at = get_state(ENABLED_AT)
    if enabled_at:
        first = max(first, dt.datetime.fromisoformat(enabled_at).date() - dt.timedelta(days=1))
    identity = None
    queued = []
    day = first
    while day <= yesterday:
        if not SyncOutbox.select().where(SyncOutbox.report_day == day).exists():
            identity = identity or load_identity(instance)
            if enqueue_day(instance, day, identity=identity, now=now):
                queued.append(day)
        day += dt.timedelta(days=1)
    return queued


# --------------------------------------------------------------------------- sending


def _on_version(version: str) -> None:
    set_state(LATEST_VERSION, version)
    set_state(LATEST_VERSION_AT, utcnow().isoformat())


def install_vendor_licence(instance, text: str) -> bool:
    """Install a licence the vendor sent back, through the licence service.

    ``LicenceService.install`` verifies it exactly like one an admin uploads (trust
    roots, signature, payload, binding to this installation, expiry) and
    records refusals in the audit trail. The vendor repeats its licence on every
    answer, so a text refused once is not tried (and audited) again.
    Returns True when a new licence was installed.
    """
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    if get_state(REFUSED_LICENCE) == digest:
        return False
    try:
        licence, new = LicenceService.for_instance(instance).install(text, actor_id=None)
    except LicenceError as exc:
        set_state(REFUSED_LICENCE, digest)
        set_state(LICENCE_NOTE, f"refused a licence from the vendor: {exc}")
        raise
    if new:
        set_state(LICENCE_NOTE, f"licence {licence.licence_id} installed from the vendor on {utcnow():%Y-%m-%d}")
    return new


def make_client(instance, *, session_factory=None, clock=None) -> SyncClient:
    return SyncClient(
        settings_for(instance),
        DatabaseOutbox(database_proxy),
        session_factory=session_factory,
        on_version=_on_version,
        on_licence=lambda text: install_vendor_licence(instance, text),
        clock=clock or utcnow,
    )


def run_once(instance, *, now=None, session_factory=None, clock=None) -> RunResult:
    """Queue due days and send what is due, if sync is on; otherwise touch nothing."""
    settings = settings_for(instance)
    if not settings.active:
        reason = "locked off by the installer" if settings.locked_off else "turned off"
        return RunResult(status="disabled", messages=[f"sync is {reason}"])
    enqueue_due(instance, now or (clock() if clock else None))
    return make_client(instance, session_factory=session_factory, clock=clock).run_once()


def sync_job(app) -> None:
    """Worker job: once per round; cheap when there is nothing to do."""
    instance = app.extensions["appliance_instance"]
    result = run_once(instance)
    if result.status == "error":
        log.warning("sync: %s", "; ".join(result.messages))
    elif result.status not in ("disabled", "idle"):
        log.info(
            "sync: %s (%d request(s), %d sent, %d failed, %d to retry)",
            result.status, result.requests, result.sent, result.failed, result.retried,
        )


# --------------------------------------------------------------------------- preview, export, status


def preview(instance, now: dt.datetime | None = None) -> str:
    """Exactly what the next request would carry (the wire form is the same JSON, compact)."""
    now = now or utcnow()
    rows = list(
        SyncOutbox.select()
        .where(SyncOutbox.state.in_((PENDING, SENDING)))
        .order_by(SyncOutbox.report_day)
        .limit(settings_for(instance).max_reports_per_batch)
    )
    if rows:
        envelopes = [json.loads(r.payload) for r in rows]
        key = rows[0].idempotency_key or "<assigned when sent>"
    else:
        yesterday = now.date() - dt.timedelta(days=1)
        envelopes = [signed_envelope(instance, load_identity(instance), yesterday, now=now)]
        key = "<assigned when sent>"
    return batch_preview(envelopes, key)


def export(instance, first: dt.date, last: dt.date | None = None, *, armor: bool = False) -> str:
    envelope = signed_envelope(instance, load_identity(instance), first, last)
    return export_text(envelope, armor=armor)


def status(instance) -> dict:
    settings = settings_for(instance)
    counts = {s: 0 for s in (PENDING, SENDING, SENT, FAILED)}
    for state, n in (
        SyncOutbox.select(SyncOutbox.state, fn.COUNT(SyncOutbox.id)).group_by(SyncOutbox.state).tuples()
    ):
        counts[state] = n
    last_sent = SyncOutbox.select().where(SyncOutbox.state == SENT).order_by(SyncOutbox.sent_at.desc()).first()
    last_error = (
        SyncOutbox.select()
        .where(SyncOutbox.last_error.is_null(False) & (SyncOutbox.state != SENT))
        .order_by(SyncOutbox.id.desc())
        .first()
    )
    try:
        identity = load_identity(instance)
        installation_id, fp = identity.installation_id, identity.fingerprint()
    except (RuntimeError, OSError) as exc:  # shown, not fatal: status must work on a broken install
        installation_id, fp = None, f"unavailable: {exc}"
    try:
        settings.endpoint()
        config_problem = None
    except SyncConfigError as exc:
        config_problem = str(exc)
    return {
        "enabled": settings.active,
        "config_problem": config_problem,
        "locked_off": settings.locked_off,
        "vendor_url": settings.vendor_url or None,
        "share_tenant_names": shares_tenant_names(instance),
        "installation_id": installation_id,
        "public_key_fingerprint": fp,
        "outbox": counts,
        "last_sent_at": last_sent.sent_at.isoformat() + "Z" if last_sent else None,
        "last_sent_day": last_sent.report_day.isoformat() if last_sent else None,
        "last_error": last_error.last_error if last_error else None,
        "requests_today": DatabaseOutbox(database_proxy).requests_on(utcnow().date()),
        "max_requests_per_day": settings.max_requests_per_day,
        "latest_version": get_state(LATEST_VERSION),
        "running_version": appliance.__version__,
        "licence_note": get_state(LICENCE_NOTE),
    }


def recent_sends(limit: int = 10) -> list[SyncOutbox]:
    return list(SyncOutbox.select().order_by(SyncOutbox.report_day.desc()).limit(limit))
