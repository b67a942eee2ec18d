"""Attachments in both directions: checking, storing (encrypted at rest) and serving files.

Channel adapters hand inbound files to :func:`store_file`; the reply box, the widget and
the API go through :func:`add_message_with_files`. The limits (size, content types) are
settings (``attachment_max_bytes``, ``attachment_types``). Files are served only as
downloads with a content type that no browser renders as a page (see
:func:`download_headers`): a visitor's HTML or SVG must never run in an agent's session.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from appliance.web.db import write_transaction
from appliance.web.models.contact_center import Attachment, Conversation, Message
from appliance.web.services import ServiceError, conversations, live

MAX_FILES = 5  # per message
FILENAME_MAX = 200
# Types a browser may be handed as they are, because it shows them as media or a
# document viewer, never as a page that runs script. Everything else (HTML, SVG, XML,
# JavaScript, unknown types) is served as application/octet-stream.
SAFE_TO_LABEL = {
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv",
    "audio/ogg", "audio/mpeg", "video/mp4",
}
GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")


class FileLike(Protocol):
    """What a channel adapter hands over (appliance.web.channels.base.InboundFile has these)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class CleanFile:
    filename: str
    content_type: str
    data: bytes


def _limits() -> tuple[int, list[str]]:
    types = live.setting("attachment_types")
    if isinstance(types, str):
        types = [t.strip() for t in types.split(",") if t.strip()]
    return int(live.setting("attachment_max_bytes")), [t.lower() for t in types]


def max_file_bytes() -> int:
    """The size limit per file (``attachment_max_bytes``), for adapters that fetch files."""
    return _limits()[0]


def clean_filename(name) -> str:
    """The last path segment, without control characters, cut to FILENAME_MAX."""
    name = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".") or "attachment"
    if len(name) > FILENAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: FILENAME_MAX - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:FILENAME_MAX]
    return name


def clean_type(content_type, filename: str) -> str:
    ctype = str(content_type or "").split(";", 1)[0].strip().lower()
    if ctype in GENERIC or not _TYPE.match(ctype):
        guessed, _ = mimetypes.guess_type(filename)
        ctype = (guessed or "application/octet-stream").lower()
    return ctype


def _allowed(ctype: str, allowed: list[str]) -> bool:
    major = ctype.split("/", 1)[0]
    return ctype in allowed or f"{major}/*" in allowed or "*/*" in allowed


def check_file(f: FileLike) -> CleanFile:
    """The file with a safe name and a normalised type, or ServiceError naming the limit."""
    max_bytes, allowed = _limits()
    filename = clean_filename(getattr(f, "filename", ""))
    data = getattr(f, "data", None)
    if not isinstance(data, bytes | bytearray) or not data:
        raise ServiceError(f"{filename}: the file is empty.", 422)
    if len(data) > max_bytes:
        raise ServiceError(f"{filename}: {len(data)} bytes is over the limit of {max_bytes} bytes per file "
                           "(setting attachment_max_bytes).", 413)
    ctype = clean_type(getattr(f, "content_type", ""), filename)
    if not _allowed(ctype, allowed):
        raise ServiceError(f"{filename}: files of type {ctype} are not accepted here "
                           "(setting attachment_types lists the accepted ones).", 415)
    return CleanFile(filename, ctype, bytes(data))


def store_file(message: Message, f: FileLike) -> Attachment:
    """Store one file of ``message`` (checked first; the bytes are encrypted at rest)."""
    clean = check_file(f)
    return Attachment.create(message=message.id, tenant=message.tenant_id, filename=clean.filename,
                             content_type=clean.content_type, size=len(clean.data), data=clean.data)


def add_message_with_files(conv: Conversation, direction: str, body, files: list, author=None) -> Message:
    """A message and its files, all or nothing: every file is checked before anything is stored.

    A message of files only gets a short body naming them (bodies are never empty).
    """
    if len(files) > MAX_FILES:
        raise ServiceError(f"At most {MAX_FILES} files per message.", 422)
    cleaned = [check_file(f) for f in files]
    if cleaned and not (isinstance(body, str) and body.strip()):
        body = "Attachment: " + ", ".join(c.filename for c in cleaned)
    with write_transaction():
        msg = conversations.add_message(conv, direction, body, author=author)
        for clean in cleaned:
            Attachment.create(message=msg.id, tenant=msg.tenant_id, filename=clean.filename,
                              content_type=clean.content_type, size=len(clean.data), data=clean.data)
    return msg


def decode_base64(text: str, field: str = "data") -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(f"{field} must be the file's bytes in standard base64.", 422) from exc


@dataclass(frozen=True)
class Upload:
    """A file received in a form or a JSON body, in the shape store_file takes."""

    filename: str
    content_type: str
    data: bytes


def from_form(storage) -> Upload:
    """A werkzeug FileStorage from a multipart form."""
    return Upload(storage.filename or "", storage.mimetype or "", storage.read())


def metadata_for(message_ids) -> dict[int, list[Attachment]]:
    """The attachments of these messages without their bytes (one query)."""
    ids = [i for i in message_ids if i is not None]
    out: dict[int, list[Attachment]] = {}
    if not ids:
        return out
    rows = (Attachment.select(Attachment.id, Attachment.message, Attachment.tenant, Attachment.uid,
                              Attachment.filename, Attachment.content_type, Attachment.size)
            .where(Attachment.message.in_(ids)).order_by(Attachment.id))
    for row in rows:
        out.setdefault(row.message_id, []).append(row)
    return out


def download_headers(att: Attachment) -> dict:
    """Always a download; a type that is not rendered as a page; no sniffing, no script."""
    served = att.content_type if att.content_type in SAFE_TO_LABEL else "application/octet-stream"
    ascii_name = att.filename.encode("ascii", "ignore").decode().replace('"', "").replace("\\", "") or "attachment"
    return {
        "Content-Type": served,
        "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(att.filename)}",
        "Content-Length": str(att.size),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
    }


def accepts_uploads(view):
    """Mark a view that takes file uploads: the app raises that request's body limit to
    MAX_FILES files of attachment_max_bytes (every other route keeps max_request_bytes)."""
    view.accepts_uploads = True
    return view
