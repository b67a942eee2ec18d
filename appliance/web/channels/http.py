"""Calls to a provider's API, with its answers turned into the adapter's failures.

A timeout, a dropped connection, a 5xx or a 429 is temporary (the outbox tries again,
after ``retry_after`` when the service gave one); any other 4xx is permanent.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from appliance.web.channels.base import InboundFile, PermanentFailure, TemporaryFailure


class TooLarge(PermanentFailure):
    """A download that went over its ``max_bytes``."""


def base_url(settings: dict, default: str) -> str:
    return (settings.get("api_base_url") or default).rstrip("/")


def call(method: str, url: str, *, timeout: float, retry_after=None, **kwargs) -> dict:
    """The JSON answer of a successful call; ``retry_after(body) -> seconds|None`` reads a 429's delay."""
    try:
        answer = requests.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise TemporaryFailure("The service did not answer in time.") from None
    except requests.RequestException as exc:
        raise TemporaryFailure(f"Could not reach the service: {type(exc).__name__}.") from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {"result": body}
    if answer.status_code == 429:
        delay = retry_after(body) if retry_after else None
        if delay is None:
            header = answer.headers.get("Retry-After", "")
            delay = float(header) if header.isdigit() else None
        raise TemporaryFailure("The service is rate limiting (429).", retry_after=delay)
    if answer.status_code >= 500:
        raise TemporaryFailure(f"The service answered {answer.status_code}.")
    if answer.status_code >= 400:
        detail = describe(body) or answer.reason
        raise PermanentFailure(f"The service refused the call ({answer.status_code}): {detail}"[:500])
    return body


def download(url: str, *, timeout: float, max_bytes: int, too_large: str, headers=None) -> bytes:
    """A file a service hands out by URL, at most ``max_bytes`` read (``too_large``: the refusal then)."""
    try:
        answer = requests.get(url, timeout=timeout, stream=True, allow_redirects=False, headers=headers)
        answer.raise_for_status()
        data = answer.raw.read(max_bytes + 1, decode_content=True)
    except requests.RequestException:
        raise TemporaryFailure("The file could not be downloaded.") from None
    if len(data) > max_bytes:
        raise TooLarge(too_large)
    return data


def inbound_file(name: str, content_type: str, fetch: Callable[[int], bytes], *, service_max: int,
                 service_limit: str, size=None) -> InboundFile:
    """The file a customer's message points at, read by ``fetch(max_bytes)`` (``download`` it).

    At most the attachment limit (``attachment_max_bytes``) or the service's own ``service_max``
    is read: a bigger file (by its declared ``size`` or by what arrived) or one that cannot be
    had comes back without bytes and with ``left_out`` saying why, so the message still
    arrives and names it (a service would re-deliver a refused item forever).
    """
    from appliance.web.services.attachments import max_file_bytes

    limit = max_file_bytes()
    over = (f"over the limit of {limit} bytes per file (setting attachment_max_bytes)" if limit < service_max
            else service_limit)
    if isinstance(size, int) and not isinstance(size, bool) and size > min(limit, service_max):
        return InboundFile(name, content_type, b"", left_out=f"{size} bytes is {over}")
    try:
        return InboundFile(name, content_type, fetch(min(limit, service_max)))
    except TooLarge:
        return InboundFile(name, content_type, b"", left_out=f"the file is {over}")
    except TemporaryFailure:
        return InboundFile(name, content_type, b"", left_out="the service did not hand the file out; ask for it again")
    except PermanentFailure as exc:
        return InboundFile(name, content_type, b"", left_out=exc.reason)


def describe(body: dict) -> str:
    """The service's own words for an error, whichever shape it uses."""
    for key in ("description", "message", "error_msg"):
        if isinstance(body.get(key), str):
            return body[key]
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("error_msg") or "")
    return str(error or "")
