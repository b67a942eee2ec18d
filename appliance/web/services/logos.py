"""The one logo validator, shared by the branding page and the API.

A logo is stored as a ``data:`` URL of a small raster image. The type is sniffed from
the bytes, never taken from what the client declares: an SVG (``data:image/svg+xml``)
can carry script, so only PNG, JPEG, GIF and WebP are accepted, whichever way the
logo arrives.
"""

from __future__ import annotations

import base64
import binascii
import re

from appliance.web.services import ServiceError

MAX_BYTES = 140_000  # base64 grows it by 4/3: the data URL then stays under 200 kB
MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
_DATA_URL = re.compile(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)", re.ASCII)
HINT = "The logo must be a PNG, JPEG, GIF or WebP image"


def sniff(data: bytes) -> str | None:
    """The image type the bytes are, among the accepted raster formats (None: not one)."""
    mime = next((m for magic, m in MAGIC.items() if data.startswith(magic)), None)
    if mime is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    return mime


def data_url(data: bytes) -> str:
    """Uploaded bytes as the stored data URL; ServiceError (413/415) for anything else."""
    if len(data) > MAX_BYTES:
        raise ServiceError(f"The logo is limited to {MAX_BYTES // 1000} kB; use a smaller image.", 413)
    mime = sniff(data)
    if mime is None:
        raise ServiceError(f"{HINT}.", 415)
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def check_data_url(value: str) -> str:
    """A logo given as a data URL (the API), re-validated from its bytes and rebuilt."""
    match = _DATA_URL.fullmatch(value.strip())
    if match is None:
        raise ServiceError(f"logo: {HINT}, sent as data:image/<type>;base64,<data>.", 422)
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError("logo: the base64 data is not valid.", 422) from None
    if len(data) > MAX_BYTES:
        raise ServiceError(f"logo: limited to {MAX_BYTES // 1000} kB; use a smaller image.", 422)
    if sniff(data) is None:
        raise ServiceError(f"logo: {HINT} (SVG is refused: it can carry script).", 422)
    return data_url(data)
