"""Calls to a provider's API, with its answers turned into the adapter's failures.

A timeout, a dropped connection, a 5xx or a 429 is temporary (the outbox tries again,
after ``retry_after`` when the service gave one); any other 4xx is permanent.
"""

from __future__ import annotations

import requests

from appliance.web.channels.base import PermanentFailure, TemporaryFailure


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
        raise PermanentFailure(too_large)
    return data


def describe(body: dict) -> str:
    """The service's own words for an error, whichever shape it uses."""
    for key in ("description", "message", "error_msg"):
        if isinstance(body.get(key), str):
            return body[key]
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("error_msg") or "")
    return str(error or "")
