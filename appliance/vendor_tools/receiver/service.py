"""What the receiver does, independent of HTTP: register, verify, store once, summarise.

Every write happens in one ``BEGIN IMMEDIATE`` transaction per batch or file,
so a receiver killed in the middle of a batch stores none of it, and the
sender's retry (same idempotency key, same report ids) stores all of it once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from dataclasses import dataclass

from appliance.core.identity import (
    IdentityError,
    fingerprint,
    load_public_key,
    public_key_pem,
)
from appliance.core.sync.report import (
    BATCH_FORMAT,
    ReportError,
    canonical_json,
    parse_export,
    parse_json,
    verify_envelope,
)
from appliance.vendor_tools.receiver.models import (
    DayUsage,
    Installation,
    ReceivedBatch,
    Report,
    VendorSetting,
    utcnow,
    vendor_db,
)

MAX_REPORTS_PER_BATCH = 400
_KEY_RE = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,39}$")
LATEST_VERSION = "latest_version"


class RegistrationError(ValueError):
    pass


class BatchError(ValueError):
    """The whole request is unusable (not one bad report among good ones)."""

    def __init__(self, code: str, reason: str, status: int = 400):
        super().__init__(reason)
        self.code, self.reason, self.status = code, reason, status


# --------------------------------------------------------------------------- installations


def register_installation(
    installation_id: str, public_key_text: str, label: str | None = None, *, replace: bool = False
) -> tuple[Installation, bool]:
    """Register (or confirm) an installation's key; returns (row, created_or_changed).

    A different key for a known id is refused unless ``replace``: silently
    swapping keys would let anyone who learns an id report in its name.
    """
    installation_id = (installation_id or "").strip().lower()
    if not _UUID_RE.match(installation_id):
        raise RegistrationError("the installation id must be a UUID (see 'appliance sync identity')")
    try:
        key = load_public_key(public_key_text)
    except IdentityError as exc:
        raise RegistrationError(str(exc)) from exc
    pem, fp = public_key_pem(key), fingerprint(key)
    with vendor_db.atomic("IMMEDIATE"):
        row = Installation.get_or_none(Installation.installation_id == installation_id)
        if row is None:
            row = Installation.create(
                installation_id=installation_id, public_key=pem, fingerprint=fp, label=label
            )
            return row, True
        if row.fingerprint != fp:
            if not replace:
                raise RegistrationError(
                    f"installation {installation_id} is registered with another key "
                    f"({row.fingerprint}); pass --replace to rotate it"
                )
            row.public_key, row.fingerprint = pem, fp
            if label is not None:
                row.label = label
            row.save()
            return row, True
        if label is not None and label != row.label:
            row.label = label
            row.save()
        return row, False


def _lookup_key(installation_id: str):
    row = Installation.get_or_none(Installation.installation_id == installation_id)
    return load_public_key(row.public_key) if row else None


def set_licence(installation_id: str, licence_text: str) -> None:
    with vendor_db.atomic("IMMEDIATE"):
        row = Installation.get_or_none(Installation.installation_id == installation_id)
        if row is None:
            raise RegistrationError(f"installation {installation_id} is not registered")
        row.licence_text = licence_text.strip() + "\n"
        row.licence_updated_at = utcnow()
        row.save()


def set_latest_version(version: str) -> None:
    if not _VERSION_RE.match(version or ""):
        raise ValueError("a version looks like 1.4.2")
    with vendor_db.atomic("IMMEDIATE"):
        VendorSetting.insert(key=LATEST_VERSION, value=version).on_conflict_replace().execute()


def latest_version() -> str | None:
    row = VendorSetting.get_or_none(VendorSetting.key == LATEST_VERSION)
    return row.value if row else None


# --------------------------------------------------------------------------- reports


def _store(envelope, source: str) -> tuple[dict, int | None]:
    """Verify and store one envelope (inside the caller's transaction); never raises ReportError.

    Returns the answer for the sender and the installation row id (None when rejected).
    """
    report_id = None
    if isinstance(envelope, dict) and isinstance(envelope.get("report"), dict):
        candidate = envelope["report"].get("report_id")
        report_id = candidate if isinstance(candidate, str) and _UUID_RE.match(candidate) else None
    try:
        report = verify_envelope(envelope, _lookup_key)
    except ReportError as exc:
        return {"report_id": report_id, "status": "rejected", "code": exc.code, "reason": exc.reason}, None
    installation = Installation.get(Installation.installation_id == report["installation_id"])
    now = utcnow()
    installation.last_seen_at = now
    installation.save()
    existing = Report.get_or_none(
        (Report.installation == installation) & (Report.report_id == report["report_id"])
    )
    if existing is not None:
        return {"report_id": report["report_id"], "status": "duplicate"}, installation.id
    days = report["days"]
    row = Report.create(
        installation=installation,
        report_id=report["report_id"],
        generated_at=report["generated_at"],
        first_day=dt.date.fromisoformat(days[0]["date"]),
        last_day=dt.date.fromisoformat(days[-1]["date"]),
        version=report["version"],
        profile=report["profile"],
        source=source,
        received_at=now,
        payload=canonical_json(report).decode("ascii"),
        signature=envelope["signature"],
    )
    for day in days:
        date = dt.date.fromisoformat(day["date"])
        newer = (
            DayUsage.select()
            .where(
                (DayUsage.installation == installation)
                & (DayUsage.date == date)
                & (DayUsage.generated_at > report["generated_at"])
            )
            .exists()
        )
        if newer:
            continue  # an older report arriving late must not overwrite fresher counts
        DayUsage.delete().where(
            (DayUsage.installation == installation) & (DayUsage.date == date)
        ).execute()
        rows = [
            {
                "installation": installation.id,
                "date": date,
                "tenant": str(t["tenant"]),
                "tenant_name": t.get("name"),
                "conversations": t["conversations"],
                "messages": t["messages"],
                "active_operators": t["active_operators"],
                "seats_used": t["seats_used"],
                "programs": json.dumps(t["programs"]),
                "report": row.id,
                "generated_at": report["generated_at"],
            }
            for t in day["tenants"]
        ]
        for start in range(0, len(rows), 500):
            DayUsage.insert_many(rows[start : start + 500]).execute()
    return {"report_id": report["report_id"], "status": "stored"}, installation.id


def _extras(installation_ids: set) -> dict:
    """The answer's extras: latest version, and the licence when one installation is named."""
    out = {"latest_version": latest_version(), "licence": None}
    ids = {i for i in installation_ids if i is not None}
    if len(ids) == 1:
        installation = Installation.get_by_id(ids.pop())
        out["licence"] = installation.licence_text
    return out


def receive_batch(body: bytes, idempotency_key: str | None) -> dict:
    """Handle one POSTed batch; raises BatchError for a request that is unusable as a whole."""
    try:
        batch = parse_json(body)
    except ReportError as exc:
        raise BatchError("malformed", exc.reason) from None
    if not isinstance(batch, dict) or batch.get("format") != BATCH_FORMAT or batch.get("v") != 1:
        raise BatchError("malformed", f"not a {BATCH_FORMAT} version 1 body")
    reports = batch.get("reports")
    if not isinstance(reports, list) or not reports:
        raise BatchError("malformed", "the batch holds no reports")
    if len(reports) > MAX_REPORTS_PER_BATCH:
        raise BatchError("too_large", f"at most {MAX_REPORTS_PER_BATCH} reports per batch", 413)
    key = idempotency_key or batch.get("batch_id")
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise BatchError("malformed", "an Idempotency-Key header (8-64 characters) is required")
    if batch.get("batch_id") not in (None, key):
        raise BatchError("malformed", "the Idempotency-Key header and batch_id differ")
    report_ids = sorted(
        str(r.get("report", {}).get("report_id")) if isinstance(r, dict) and isinstance(r.get("report"), dict) else ""
        for r in reports
    )
    with vendor_db.atomic("IMMEDIATE"):
        seen = ReceivedBatch.get_or_none(ReceivedBatch.idempotency_key == key)
        stored = json.loads(seen.results) if seen is not None else None
        # Replay the first answer only while it still holds: "unregistered" can
        # change (the vendor registers the key later), so such a batch is re-run.
        if (
            stored is not None
            and json.loads(seen.report_ids) == report_ids
            and not any(r.get("code") == "unregistered" for r in stored["results"])
        ):
            results = stored["results"]
            installations = set(stored["installations"])
            replayed = True
        else:
            pairs = [_store(envelope, "http") for envelope in reports]
            results = [result for result, _ in pairs]
            installations = {inst for _, inst in pairs if inst is not None}
            replayed = False
            record = json.dumps({"results": results, "installations": sorted(installations)})
            if seen is None:
                ReceivedBatch.create(
                    idempotency_key=key, report_ids=json.dumps(report_ids), results=record
                )
            elif json.loads(seen.report_ids) == report_ids:
                seen.results = record
                seen.save()
        extras = _extras(installations)
    return {"batch_id": key, "replayed": replayed, "results": results, **extras}


def receive_export(data: bytes | str) -> dict:
    """Handle one uploaded export file (air-gapped sites); same checks as the online path."""
    try:
        envelope = parse_export(data)
    except ReportError as exc:
        return {"report_id": None, "status": "rejected", "code": exc.code, "reason": exc.reason}
    with vendor_db.atomic("IMMEDIATE"):
        result, _ = _store(envelope, "file")
    return result


# --------------------------------------------------------------------------- listing


@dataclass
class InstallationSummary:
    installation_id: str
    label: str | None
    fingerprint: str
    registered_at: str
    last_seen_at: str | None
    version: str | None
    profile: str | None
    reports: int
    latest_day: str | None
    tenants: int
    conversations: int
    messages: int
    active_operators: int
    seats_used: int
    licence_pending: bool
    audit_entries: int | None = None
    # The installation's audit trail had fewer entries in a later report than in an earlier
    # one: entries were deleted (or the database restored from an older backup).
    audit_trail_shrank: bool = False

    def to_json(self) -> dict:
        return self.__dict__.copy()


def _iso(value) -> str | None:
    return value.isoformat() + "Z" if value else None


AUDIT_LOOKBACK = 60  # reports compared for a shrinking audit trail


def _audit_checkpoint(inst: Installation) -> dict:
    """The latest reported audit-trail size and whether it ever went down (recent reports)."""
    counts = []
    recent = (Report.select(Report.payload).where(Report.installation == inst)
              .order_by(Report.generated_at.desc()).limit(AUDIT_LOOKBACK))
    for row in reversed(list(recent)):
        entries = json.loads(row.payload).get("audit_entries")
        if entries is not None:
            counts.append(entries)
    shrank = any(later < earlier for earlier, later in itertools.pairwise(counts))
    return {"audit_entries": counts[-1] if counts else None, "audit_trail_shrank": shrank}


def list_installations() -> list[InstallationSummary]:
    out = []
    for inst in Installation.select().order_by(Installation.registered_at):
        last_report = (
            Report.select().where(Report.installation == inst).order_by(Report.generated_at.desc()).first()
        )
        latest_day = (
            DayUsage.select(DayUsage.date)
            .where(DayUsage.installation == inst)
            .order_by(DayUsage.date.desc())
            .scalar()
        )
        totals = {"tenants": 0, "conversations": 0, "messages": 0, "active_operators": 0, "seats_used": 0}
        if latest_day is not None:
            for usage in DayUsage.select().where(
                (DayUsage.installation == inst) & (DayUsage.date == latest_day)
            ):
                totals["tenants"] += 1
                for name in ("conversations", "messages", "active_operators", "seats_used"):
                    totals[name] += getattr(usage, name)
        out.append(
            InstallationSummary(
                installation_id=inst.installation_id,
                label=inst.label,
                fingerprint=inst.fingerprint,
                registered_at=_iso(inst.registered_at),
                last_seen_at=_iso(inst.last_seen_at),
                version=last_report.version if last_report else None,
                profile=last_report.profile if last_report else None,
                reports=Report.select().where(Report.installation == inst).count(),
                latest_day=str(latest_day) if latest_day else None,
                licence_pending=bool(inst.licence_text),
                **totals,
                **_audit_checkpoint(inst),
            )
        )
    return out
