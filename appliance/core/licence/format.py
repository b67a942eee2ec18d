"""The licence file: armoured text around exact payload bytes and an Ed25519 signature.

A licence must survive being pasted into a web form or sent by e-mail, so it is
plain ASCII with short lines::

    -----BEGIN APPLIANCE LICENCE-----
    Format: 1
    Key-Id: ed25519-0123456789abcdef

    <base64 of the payload bytes, 64 columns>

    <base64 of the 64-byte signature>
    -----END APPLIANCE LICENCE-----

The payload is canonical JSON (sorted keys, no spaces, UTF-8) and the signature
covers a domain-separated message built from the format version, the key id and
those exact bytes (:func:`signed_message`), so a signature can be neither
moved to another key id nor mistaken for a signature made for some other
purpose with the same vendor key.

Reading order matters: size, armour, headers, key lookup and signature are all
checked before a single byte of the payload is parsed. Only then is the JSON
decoded and checked field by field; unknown fields, wrong types and
non-canonical encodings are refused rather than guessed at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

FORMAT_VERSION = 1
MAX_LICENCE_BYTES = 16 * 1024
BEGIN_LINE = "-----BEGIN APPLIANCE LICENCE-----"
END_LINE = "-----END APPLIANCE LICENCE-----"
DOMAIN = b"appliance-licence-signature\x00"
SIGNATURE_BYTES = 64
WRAP = 64

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LICENCE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# Fields of the payload: name -> (kind, required). Anything else is refused so a
# newer vendor tool cannot slip in a field this appliance would silently ignore.
FIELDS: dict[str, tuple[str, bool]] = {
    "licence_id": ("licence_id", True),
    "customer": ("text", True),
    "issued_at": ("timestamp", True),
    "valid_from": ("timestamp", True),
    "expires_at": ("timestamp", True),
    "grace_days": ("count", True),
    "max_tenants": ("count", True),
    "max_seats": ("count", True),
    "programs": ("names", True),
    "profiles": ("names", True),
    "installation_id": ("optional_text", False),
    # The installation's public-key fingerprint ("SHA256:...", as 'appliance sync identity'
    # prints it): binds the licence to the key, which a copied or rewritten id file cannot fake.
    "installation_key": ("optional_text", False),
    "replaces": ("optional_licence_id", False),
}
MAX_COUNT = 1_000_000
MAX_GRACE_DAYS = 365


class LicenceError(ValueError):
    """A licence was refused; ``str(exc)`` tells a person why, ``reason`` tells code."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Licence:
    """A licence whose signature has been verified and whose payload passed the checks."""

    licence_id: str
    customer: str
    issued_at: datetime
    valid_from: datetime
    expires_at: datetime
    grace_days: int
    max_tenants: int
    max_seats: int
    programs: tuple[str, ...]
    profiles: tuple[str, ...]
    installation_id: str | None
    replaces: str | None
    key_id: str
    # False when the signing key came from APPLIANCE_LICENCE_TRUST_ROOT, not the
    # keys shipped with the appliance: the UI and CLI must say so.
    production: bool
    text: str = field(repr=False, compare=False)
    payload_bytes: bytes = field(repr=False)
    installation_key: str | None = None

    @property
    def grace_ends_at(self) -> datetime:
        return self.expires_at + timedelta(days=self.grace_days)

    @property
    def fingerprint(self) -> str:
        """Short hash of the signed bytes; identifies this exact licence in history and logs."""
        return hashlib.sha256(self.payload_bytes).hexdigest()[:16]

    def summary(self) -> dict:
        """The payload as JSON-ready values, plus where it came from."""
        return {
            "licence_id": self.licence_id,
            "customer": self.customer,
            "issued_at": format_timestamp(self.issued_at),
            "valid_from": format_timestamp(self.valid_from),
            "expires_at": format_timestamp(self.expires_at),
            "grace_days": self.grace_days,
            "grace_ends_at": format_timestamp(self.grace_ends_at),
            "max_tenants": self.max_tenants,
            "max_seats": self.max_seats,
            "programs": list(self.programs),
            "profiles": list(self.profiles),
            "installation_id": self.installation_id,
            "installation_key": self.installation_key,
            "replaces": self.replaces,
            "key_id": self.key_id,
            "production_key": self.production,
            "fingerprint": self.fingerprint,
        }


# -- keys -------------------------------------------------------------------


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """The key id is a hash of the key itself, so a .pub file cannot lie about its id."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]


# -- timestamps -------------------------------------------------------------


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str, name: str = "timestamp") -> datetime:
    if not isinstance(text, str) or not TIMESTAMP_RE.match(text):
        raise LicenceError(
            f"Licence field {name!r} must be a UTC time like 2027-01-31T00:00:00Z.", "payload"
        )
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise LicenceError(f"Licence field {name!r} is not a real date: {text}.", "payload") from exc


def coerce_timestamp(value, name: str) -> str:
    """Vendor-side convenience: YAML gives dates and datetimes; the payload wants text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return format_timestamp(value)
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    if isinstance(value, str):
        parse_timestamp(value, name)
        return value
    raise LicenceError(f"Field {name!r} must be a date or UTC time, not {type(value).__name__}.", "payload")


# -- encoding ---------------------------------------------------------------


def canonical_json(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def signed_message(key_id: str, payload_bytes: bytes) -> bytes:
    """What the signature covers: domain tag, format version, key id, then the payload.

    Lengths are encoded explicitly so no two (key id, payload) pairs give the same message.
    """
    kid = key_id.encode("ascii")
    return (
        DOMAIN
        + struct.pack(">H", FORMAT_VERSION)
        + struct.pack(">H", len(kid))
        + kid
        + struct.pack(">Q", len(payload_bytes))
        + payload_bytes
    )


def _wrap(data: bytes) -> list[str]:
    text = base64.b64encode(data).decode("ascii")
    return [text[i : i + WRAP] for i in range(0, len(text), WRAP)]


def armour(key_id: str, payload_bytes: bytes, signature: bytes) -> str:
    lines = [BEGIN_LINE, f"Format: {FORMAT_VERSION}", f"Key-Id: {key_id}", ""]
    lines += _wrap(payload_bytes)
    lines.append("")
    lines += _wrap(signature)
    lines.append(END_LINE)
    return "\n".join(lines) + "\n"


def sign_payload(payload: dict, private_key: Ed25519PrivateKey) -> str:
    """Vendor side: check the payload as the appliance would, then sign and armour it."""
    payload = {k: v for k, v in payload.items() if v is not None or FIELDS.get(k, ("", True))[1]}
    check_payload(payload)
    payload_bytes = canonical_json(payload)
    key_id = key_id_for(private_key.public_key())
    signature = private_key.sign(signed_message(key_id, payload_bytes))
    text = armour(key_id, payload_bytes, signature)
    if len(text.encode("ascii")) > MAX_LICENCE_BYTES:
        raise LicenceError(
            f"The licence would be {len(text)} bytes, over the {MAX_LICENCE_BYTES}-byte limit.",
            "size",
        )
    return text


# -- decoding ---------------------------------------------------------------


@dataclass(frozen=True)
class Armoured:
    """The parts of an armoured licence, before any cryptographic check."""

    format_version: int
    key_id: str
    payload_bytes: bytes
    signature: bytes
    text: str


def _b64(lines: list[str], what: str) -> bytes:
    joined = "".join(lines)
    if not joined:
        raise LicenceError(f"The licence has no {what}.", "armour")
    try:
        return base64.b64decode(joined, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise LicenceError(f"The licence {what} is not valid base64 ({exc}).", "armour") from exc


def parse_armour(data: str | bytes) -> Armoured:
    """Split the text into headers, payload bytes and signature; no crypto, no JSON yet.

    Text around the armour (an e-mail greeting, a signature block) is ignored;
    exactly one armoured block must be present.
    """
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_LICENCE_BYTES:
        raise LicenceError(
            f"The licence is {len(raw)} bytes; a licence is at most {MAX_LICENCE_BYTES} bytes.",
            "size",
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise LicenceError("A licence is plain ASCII text; this contains other characters.", "armour") from exc
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_LINE]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_LINE]
    if not begins or not ends:
        raise LicenceError(
            f"No licence found: expected a block between '{BEGIN_LINE}' and '{END_LINE}'.", "armour"
        )
    if len(begins) > 1 or len(ends) > 1:
        raise LicenceError("More than one licence block found; install one licence at a time.", "armour")
    start, stop = begins[0], ends[0]
    if stop < start:
        raise LicenceError("The licence END line comes before its BEGIN line.", "armour")
    body = [line.strip() for line in lines[start + 1 : stop]]

    headers: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos]:
        name, sep, value = body[pos].partition(":")
        if not sep:
            raise LicenceError(f"Malformed licence header line: {body[pos][:40]!r}.", "armour")
        name, value = name.strip(), value.strip()
        if name not in ("Format", "Key-Id"):
            raise LicenceError(f"Unknown licence header {name[:40]!r}.", "armour")
        if name in headers:
            raise LicenceError(f"Licence header {name!r} appears twice.", "armour")
        headers[name] = value
        pos += 1
    for required in ("Format", "Key-Id"):
        if required not in headers:
            raise LicenceError(f"The licence has no {required!r} header.", "armour")
    if headers["Format"] != str(FORMAT_VERSION):
        raise LicenceError(
            f"Licence format {headers['Format'][:10]!r} is not supported by this appliance "
            f"(it reads format {FORMAT_VERSION}); upgrade the appliance or ask the vendor "
            f"for a format {FORMAT_VERSION} licence.",
            "format",
        )
    key_id = headers["Key-Id"]
    if not KEY_ID_RE.match(key_id):
        raise LicenceError(f"Malformed licence key id {key_id[:70]!r}.", "armour")

    blocks: list[list[str]] = []
    current: list[str] = []
    for line in body[pos:]:
        if line:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    if len(blocks) != 2:
        raise LicenceError(
            "The licence body must be two blocks (payload, then signature) separated by a blank line.",
            "armour",
        )
    payload_bytes = _b64(blocks[0], "payload")
    signature = _b64(blocks[1], "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise LicenceError(
            f"The licence signature is {len(signature)} bytes; an Ed25519 signature is 64.",
            "signature",
        )
    block = "\n".join(lines[start : stop + 1]) + "\n"
    return Armoured(FORMAT_VERSION, key_id, payload_bytes, signature, block)


def _reject_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise LicenceError(f"Licence field {key!r} appears twice.", "payload")
        out[key] = value
    return out


def check_payload(payload) -> None:
    """Type and range checks on a decoded payload; raises LicenceError naming the field."""
    if not isinstance(payload, dict):
        raise LicenceError("The licence payload must be a JSON object.", "payload")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise LicenceError(f"Unknown licence field(s): {', '.join(map(str, unknown))}.", "payload")
    for name, (kind, required) in FIELDS.items():
        if name not in payload:
            if required:
                raise LicenceError(f"The licence has no {name!r} field.", "payload")
            continue
        value = payload[name]
        if kind == "licence_id" or (kind == "optional_licence_id" and value is not None):
            if not isinstance(value, str) or not LICENCE_ID_RE.match(value):
                raise LicenceError(
                    f"Licence field {name!r} must be 1-64 letters, digits, '.', '_' or '-'.", "payload"
                )
        elif kind == "text" or (kind == "optional_text" and value is not None):
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise LicenceError(
                    f"Licence field {name!r} must be non-empty text of at most 200 characters.", "payload"
                )
            if any(ord(ch) < 32 for ch in value):
                raise LicenceError(f"Licence field {name!r} contains control characters.", "payload")
        elif kind == "timestamp":
            parse_timestamp(value, name)
        elif kind == "count":
            # bool is an int in Python; a licence saying "max_seats": true is a mistake.
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
                raise LicenceError(f"Licence field {name!r} must be a whole number from 0 to {MAX_COUNT}.", "payload")
        elif kind == "names":
            if not isinstance(value, list) or not all(isinstance(v, str) and NAME_RE.match(v) for v in value):
                raise LicenceError(
                    f"Licence field {name!r} must be a list of lowercase names (a-z, 0-9, '_', '-').",
                    "payload",
                )
            if len(set(value)) != len(value):
                raise LicenceError(f"Licence field {name!r} lists a name twice.", "payload")
    if payload["grace_days"] > MAX_GRACE_DAYS:
        raise LicenceError(f"Licence field 'grace_days' must be at most {MAX_GRACE_DAYS}.", "payload")
    valid_from = parse_timestamp(payload["valid_from"], "valid_from")
    expires_at = parse_timestamp(payload["expires_at"], "expires_at")
    if expires_at <= valid_from:
        raise LicenceError("The licence expires before it becomes valid (expires_at <= valid_from).", "payload")
    if payload.get("replaces") is not None and payload["replaces"] == payload["licence_id"]:
        raise LicenceError("A licence cannot replace itself.", "payload")


def decode_payload(payload_bytes: bytes) -> dict:
    """Decode and check signed payload bytes. Only call after the signature verified."""
    try:
        payload = json.loads(payload_bytes.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except LicenceError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise LicenceError(f"The licence payload is not valid JSON ({exc}).", "payload") from exc
    check_payload(payload)
    # Exactly one byte string per payload: no alternative spellings of the same licence.
    if canonical_json(payload) != payload_bytes:
        raise LicenceError("The licence payload is not in canonical form.", "payload")
    return payload


def verify_licence(data: str | bytes, trust) -> Licence:
    """Return the verified licence or raise LicenceError saying why it is refused.

    ``trust`` is a :class:`appliance.core.licence.trust.TrustStore` (anything with
    ``get(key_id)`` returning a TrustedKey or None, and ``describe()``).
    """
    armoured = parse_armour(data)
    trusted = trust.get(armoured.key_id)
    if trusted is None:
        raise LicenceError(
            f"The licence is signed by key {armoured.key_id}, which this appliance does not "
            f"trust (trusted keys: {trust.describe() or 'none'}). Ask the vendor for a licence "
            "signed by a current key, or upgrade the appliance to get the vendor's newer keys.",
            "unknown_key",
        )
    try:
        trusted.public_key.verify(armoured.signature, signed_message(armoured.key_id, armoured.payload_bytes))
    except InvalidSignature as exc:
        raise LicenceError(
            f"The licence signature does not match its contents for key {armoured.key_id}: the "
            "licence was changed after the vendor signed it, or was damaged in transit. Paste "
            "the original file exactly as received.",
            "signature",
        ) from exc
    payload = decode_payload(armoured.payload_bytes)
    return Licence(
        licence_id=payload["licence_id"],
        customer=payload["customer"],
        issued_at=parse_timestamp(payload["issued_at"]),
        valid_from=parse_timestamp(payload["valid_from"]),
        expires_at=parse_timestamp(payload["expires_at"]),
        grace_days=payload["grace_days"],
        max_tenants=payload["max_tenants"],
        max_seats=payload["max_seats"],
        programs=tuple(payload["programs"]),
        profiles=tuple(payload["profiles"]),
        installation_id=payload.get("installation_id"),
        installation_key=payload.get("installation_key"),
        replaces=payload.get("replaces"),
        key_id=armoured.key_id,
        production=trusted.production,
        text=armoured.text,
        payload_bytes=armoured.payload_bytes,
    )
