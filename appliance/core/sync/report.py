"""Usage reports: the only thing sync ever sends, and how it is signed.

A report is counts per tenant per day plus the appliance version and profile.
The validator below is deliberately strict (an allow-list of keys, and every
value an integer, a date, a UUID or a short code) so that a future change that
puts a contact's name, a phone number or a message snippet into a report fails
loudly on the customer's side, before anything leaves the network, and again on
the vendor's side. It is the defence against accidental leaks, so it rejects
rather than strips.

Besides counts of usage, a report may carry ``audit_entries``: how many entries the
installation's audit trail had (a count, never an entry). The vendor sees a trail that
shrank between two reports, which the appliance's own check could only see locally.

The tenant's display name is the single exception: it is free text and is only
allowed when the customer turned on ``sync.share_tenant_names`` (the report then
says so with ``"tenant_names": true``).

Wire format: a signed envelope ``{"format", "v", "alg", "report", "signature"}``
where the Ed25519 signature covers a context string plus the canonical JSON
bytes of ``report`` (sorted keys, no whitespace, ASCII). Export files for
air-gapped sites are the same envelope, either as readable JSON or armoured
(base64 between BEGIN/END lines) for channels that mangle JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.core import clock
from appliance.core.sizing import PROFILES

SCHEMA = 1
ENVELOPE_FORMAT = "appliance-sync-report"
ENVELOPE_VERSION = 1
BATCH_FORMAT = "appliance-sync-batch"
ALG = "Ed25519"
# Domain separation: a signature over a report can never be replayed as a
# signature over anything else this key signs (or vice versa).
SIGNING_CONTEXT = b"appliance-sync-report/v1\n"
ARMOR_BEGIN = "-----BEGIN APPLIANCE SYNC REPORT-----"
ARMOR_END = "-----END APPLIANCE SYNC REPORT-----"

COUNT_FIELDS = ("conversations", "messages", "active_operators", "seats_used")
MAX_COUNT = 10**12
MAX_DAYS = 400
MAX_TENANTS_PER_DAY = 100_000
MAX_PROGRAMS = 64
MAX_TENANT_NAME = 200
MAX_EXPORT_BYTES = 64 * 1024 * 1024

REPORT_KEYS = frozenset(
    {"schema", "report_id", "installation_id", "generated_at", "version", "profile", "days"}
)
OPTIONAL_REPORT_KEYS = frozenset({"tenant_names", "audit_entries"})
DAY_KEYS = frozenset({"date", "tenants"})
TENANT_KEYS = frozenset({"tenant", *COUNT_FIELDS, "programs"})
ENVELOPE_KEYS = frozenset({"format", "v", "alg", "report", "signature"})

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,39}$")
_PROGRAM_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Fixed namespace so that one installation's report for one day always has the
# same id: re-enqueueing or exporting the same day is then a duplicate the
# receiver drops, not a second copy.
REPORT_NAMESPACE = uuid.UUID("6f1d3c52-8a0e-4c51-9d4b-3f0a51f0c0de")


class ReportError(ValueError):
    """A report or envelope is unacceptable; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------- building


def report_id_for(installation_id: str, first_day: dt.date | str, last_day: dt.date | str) -> str:
    return str(uuid.uuid5(REPORT_NAMESPACE, f"{installation_id}/{first_day}/{last_day}"))


def utc_timestamp(now: dt.datetime | None = None) -> str:
    now = now or clock.now()
    if now.tzinfo is not None:
        now = now.astimezone(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_report(
    *,
    installation_id: str,
    version: str,
    profile: str,
    days: list[dict],
    generated_at: dt.datetime | None = None,
    report_id: str | None = None,
    tenant_names: bool = False,
    audit_entries: int | None = None,
) -> dict:
    """Assemble and validate a report from per-day tenant rows.

    ``days`` is ``[{"date": date|str, "tenants": [{"tenant": id, <counts>,
    "programs": [...], optionally "name": str}]}]``; rows are sorted so the
    same data always gives the same bytes.
    """
    out_days = []
    for day in sorted(days, key=lambda d: str(d["date"])):
        tenants = []
        for row in sorted(day["tenants"], key=lambda r: str(r["tenant"])):
            item = {"tenant": row["tenant"]}
            for field in COUNT_FIELDS:
                item[field] = row.get(field, 0)
            item["programs"] = sorted(set(row.get("programs") or ()))
            if tenant_names and row.get("name") is not None:
                item["name"] = row["name"]
            tenants.append(item)
        out_days.append({"date": str(day["date"]), "tenants": tenants})
    if not out_days:
        raise ReportError("invalid", "a report needs at least one day")
    report = {
        "schema": SCHEMA,
        "report_id": report_id
        or report_id_for(installation_id, out_days[0]["date"], out_days[-1]["date"]),
        "installation_id": installation_id,
        "generated_at": utc_timestamp(generated_at),
        "version": version,
        "profile": profile,
        "days": out_days,
    }
    if tenant_names:
        report["tenant_names"] = True
    if audit_entries is not None:
        report["audit_entries"] = audit_entries
    validate_report(report, allow_names=tenant_names)
    return report


# --------------------------------------------------------------------------- validation


def _fail(path: str, why: str):
    raise ReportError("invalid", f"{path}: {why}")


def _check_keys(obj, required: frozenset, optional: frozenset, path: str):
    if not isinstance(obj, dict):
        _fail(path, "must be an object")
    unknown = set(obj) - required - optional
    if unknown:
        # Name the keys, never echo their values: they may be the very leak.
        _fail(path, f"field(s) not allowed in a usage report: {', '.join(sorted(map(str, unknown)))}")
    missing = required - set(obj)
    if missing:
        _fail(path, f"missing field(s): {', '.join(sorted(missing))}")


def _check_count(value, path: str):
    # bool is an int subclass; True is not a count.
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        _fail(path, "must be a non-negative integer count")


def _check_date(value, path: str) -> str:
    if not isinstance(value, str) or not _DATE_RE.match(value):
        _fail(path, "must be a date YYYY-MM-DD")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        _fail(path, "is not a calendar date")
    return value


def _check_uuid(value, path: str):
    if not isinstance(value, str) or not _UUID_RE.match(value):
        _fail(path, "must be a lowercase UUID")


def _check_tenant_id(value, path: str):
    # An integer row id or a UUID: never a slug, which could be a name in disguise.
    if type(value) is int:
        if not 0 <= value <= 2**63:
            _fail(path, "tenant id out of range")
    elif isinstance(value, str):
        if not _UUID_RE.match(value):
            _fail(path, "must be a tenant id (integer or UUID), never a name or slug")
    else:
        _fail(path, "must be a tenant id (integer or UUID)")


def validate_report(report, *, allow_names: bool | None = None) -> dict:
    """Raise ReportError unless ``report`` is exactly a counts-only usage report.

    ``allow_names`` None means "as the report declares" (vendor side); the
    appliance passes its own setting so a report can never claim a permission
    the customer did not give.
    """
    _check_keys(report, REPORT_KEYS, OPTIONAL_REPORT_KEYS, "report")
    if type(report["schema"]) is not int or report["schema"] != SCHEMA:
        _fail("report.schema", f"unsupported schema (expected {SCHEMA})")
    _check_uuid(report["report_id"], "report.report_id")
    _check_uuid(report["installation_id"], "report.installation_id")
    if not isinstance(report["generated_at"], str) or not _TS_RE.match(report["generated_at"]):
        _fail("report.generated_at", "must be a UTC timestamp YYYY-MM-DDTHH:MM:SSZ")
    if not isinstance(report["version"], str) or not _VERSION_RE.match(report["version"]):
        _fail("report.version", "must be a version string")
    if report["profile"] not in PROFILES:
        _fail("report.profile", f"must be one of {', '.join(PROFILES)}")
    declared = report.get("tenant_names", False)
    if declared is not False and declared is not True:
        _fail("report.tenant_names", "must be true or false")
    names_ok = declared if allow_names is None else (declared and allow_names)
    if declared and not names_ok:
        _fail("report.tenant_names", "tenant names are not allowed by this installation's settings")

    if "audit_entries" in report:
        entries = report["audit_entries"]
        if type(entries) is not int or not 0 <= entries <= MAX_COUNT:
            _fail("report.audit_entries", f"must be an integer 0..{MAX_COUNT}")

    days = report["days"]
    if not isinstance(days, list) or not 1 <= len(days) <= MAX_DAYS:
        _fail("report.days", f"must be a list of 1..{MAX_DAYS} days")
    previous = None
    for i, day in enumerate(days):
        path = f"report.days[{i}]"
        _check_keys(day, DAY_KEYS, frozenset(), path)
        date = _check_date(day["date"], f"{path}.date")
        if previous is not None and date <= previous:
            _fail(f"{path}.date", "days must be in increasing order without repeats")
        previous = date
        tenants = day["tenants"]
        if not isinstance(tenants, list) or len(tenants) > MAX_TENANTS_PER_DAY:
            _fail(f"{path}.tenants", f"must be a list of at most {MAX_TENANTS_PER_DAY} tenants")
        seen = set()
        for j, row in enumerate(tenants):
            tpath = f"{path}.tenants[{j}]"
            _check_keys(row, TENANT_KEYS, frozenset({"name"}) if names_ok else frozenset(), tpath)
            _check_tenant_id(row["tenant"], f"{tpath}.tenant")
            key = (type(row["tenant"]).__name__, row["tenant"])
            if key in seen:
                _fail(f"{tpath}.tenant", "appears twice in one day")
            seen.add(key)
            for field in COUNT_FIELDS:
                _check_count(row[field], f"{tpath}.{field}")
            programs = row["programs"]
            if not isinstance(programs, list) or len(programs) > MAX_PROGRAMS:
                _fail(f"{tpath}.programs", f"must be a list of at most {MAX_PROGRAMS} program codes")
            for k, code in enumerate(programs):
                if not isinstance(code, str) or not _PROGRAM_RE.match(code):
                    _fail(f"{tpath}.programs[{k}]", "must be a program code like 'web_chat'")
            if len(set(programs)) != len(programs):
                _fail(f"{tpath}.programs", "repeats a program code")
            if "name" in row:
                name = row["name"]
                if (
                    not isinstance(name, str)
                    or not 0 < len(name) <= MAX_TENANT_NAME
                    or _CONTROL_RE.search(name)
                ):
                    _fail(f"{tpath}.name", f"must be 1..{MAX_TENANT_NAME} printable characters")
    return report


# --------------------------------------------------------------------------- canonical bytes, signing


def canonical_json(obj) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _no_duplicate_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ReportError("malformed", f"JSON object repeats the key {key!r}")
        out[key] = value
    return out


def _no_constants(name):
    raise ReportError("malformed", f"JSON constant {name} is not allowed")


def parse_json(data: bytes | str):
    """Parse JSON strictly: duplicate keys and NaN/Infinity are rejected, not resolved."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError("malformed", f"not valid JSON: {exc}") from exc


def sign_report(report: dict, identity, *, allow_names: bool = False) -> dict:
    """Validate then sign; the returned envelope is what goes on the wire or into a file."""
    validate_report(report, allow_names=allow_names)
    if report["installation_id"] != identity.installation_id:
        raise ReportError("invalid", "report.installation_id is not this installation's id")
    signature = identity.sign(SIGNING_CONTEXT + canonical_json(report))
    return {
        "format": ENVELOPE_FORMAT,
        "v": ENVELOPE_VERSION,
        "alg": ALG,
        "report": report,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def verify_envelope(
    envelope, lookup_public_key: Callable[[str], Ed25519PublicKey | None]
) -> dict:
    """Return the report inside a genuine envelope, or raise ReportError saying why not.

    Codes: ``malformed`` (not an envelope), ``unsigned``, ``unregistered``
    (unknown installation), ``bad_signature`` (tampered or signed by another
    key), ``invalid`` (signed, but not a counts-only report).
    """
    if not isinstance(envelope, dict):
        raise ReportError("malformed", "a report envelope must be a JSON object")
    if envelope.get("format") != ENVELOPE_FORMAT or envelope.get("v") != ENVELOPE_VERSION:
        raise ReportError(
            "malformed", f"not a {ENVELOPE_FORMAT} envelope version {ENVELOPE_VERSION}"
        )
    signature_text = envelope.get("signature")
    if not signature_text:
        raise ReportError("unsigned", "the report is not signed")
    unknown = set(envelope) - ENVELOPE_KEYS
    if unknown:
        raise ReportError("malformed", f"unexpected envelope field(s): {', '.join(sorted(unknown))}")
    if envelope.get("alg") != ALG:
        raise ReportError("malformed", f"unsupported signature algorithm (expected {ALG})")
    report = envelope.get("report")
    if not isinstance(report, dict):
        raise ReportError("malformed", "the envelope holds no report object")
    installation_id = report.get("installation_id")
    if not isinstance(installation_id, str) or not _UUID_RE.match(installation_id):
        raise ReportError("malformed", "the report names no installation id")
    key = lookup_public_key(installation_id)
    if key is None:
        raise ReportError(
            "unregistered",
            f"installation {installation_id} is not registered with the vendor",
        )
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ReportError("bad_signature", "the signature is not valid base64") from None
    try:
        key.verify(signature, SIGNING_CONTEXT + canonical_json(report))
    except (InvalidSignature, ValueError, TypeError):
        raise ReportError(
            "bad_signature",
            "the signature does not match the report (altered, or signed by another key)",
        ) from None
    validate_report(report)
    return report


# --------------------------------------------------------------------------- export files


def export_text(envelope: dict, *, armor: bool = False) -> str:
    """An export file: readable JSON by default, or armoured base64 of the canonical envelope."""
    if not armor:
        return json.dumps(envelope, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    body = base64.b64encode(canonical_json(envelope)).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([ARMOR_BEGIN, *lines, ARMOR_END]) + "\n"


def parse_export(data: bytes | str) -> dict:
    """Read an export file of either kind back into an envelope (not yet verified)."""
    if isinstance(data, bytes):
        if len(data) > MAX_EXPORT_BYTES:
            raise ReportError("malformed", "the export file is too large")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ReportError("malformed", "the export file is not UTF-8 text") from None
    text = data.strip().lstrip("\ufeff")
    if text.startswith(ARMOR_BEGIN):
        if ARMOR_END not in text:
            raise ReportError("malformed", "armoured export has no END line (truncated?)")
        inner = text[len(ARMOR_BEGIN) : text.index(ARMOR_END)]
        try:
            raw = base64.b64decode("".join(inner.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ReportError("malformed", "armoured export is not valid base64") from None
        return parse_json(raw)
    if text.startswith("{"):
        return parse_json(text)
    raise ReportError(
        "malformed", "not an appliance sync export (expected JSON or an armoured report)"
    )
