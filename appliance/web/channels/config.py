"""A channel's settings and status, as the adapters and the admin pages see them.

The stored document is sealed with the tenant's key (``ChannelConfig.settings``);
secrets in it are write-only: ``public_settings`` never includes them, only whether
each is set. Installation-wide values (tolerances, timeouts) are merged in from the
instance configuration, so an adapter gets everything in one dict.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid

from flask import current_app, has_app_context

from appliance.core.config import DEFAULTS
from appliance.web.channels import adapter_for
from appliance.web.models.base import utcnow
from appliance.web.models.channels import ChannelConfig
from appliance.web.models.contact_center import Channel
from appliance.web.services import ServiceError

MAX_VALUE = 2000


def timedelta_since(when: dt.datetime) -> dt.timedelta:
    return utcnow() - when


def installation_settings() -> dict:
    if has_app_context() and "appliance_instance" in current_app.extensions:
        return dict(current_app.extensions["appliance_instance"]["channels"])
    return dict(DEFAULTS["channels"])


def config_row(channel: Channel) -> ChannelConfig:
    row = ChannelConfig.get_or_none(ChannelConfig.channel == channel.id)
    if row is None:
        ChannelConfig.insert(channel=channel.id, tenant=channel.tenant_id, poll_state="{}",
                             updated_at=utcnow(), uid=uuid.uuid4()).on_conflict_ignore().execute()
        row = ChannelConfig.get(ChannelConfig.channel == channel.id)
    return row


def _prefetched(channel: Channel):
    """The settings row selected with the channel (inbound posts join it), or ... when it was not."""
    row = getattr(channel, "config_row", ...)
    if row is not ... and row is not None and row.id is None:
        return None  # the outer join found no row
    return row


def stored_settings(channel: Channel) -> dict:
    row = _prefetched(channel)
    if row is ...:
        row = ChannelConfig.get_or_none(ChannelConfig.channel == channel.id)
    value = row.settings if row is not None else None
    return dict(value) if isinstance(value, dict) else {}


def settings_for(channel: Channel) -> dict:
    """Everything an adapter call needs for ``channel``."""
    adapter = adapter_for(channel.kind)
    install = installation_settings()
    values = {f.name: f.default for f in adapter.settings_fields}
    values.update({k: v for k, v in stored_settings(channel).items() if v not in (None, "")})
    values.update(
        signing_secrets(channel),
        channel_key=channel.public_key,
        tolerance_seconds=int(install["webhook_tolerance_seconds"]),
        timeout=float(install["http_timeout_seconds"]),
        poll_wait=int(install["poll_wait_seconds"]),
    )
    return values


def signing_secrets(channel: Channel) -> dict:
    """The channel's signing secret and the one a rotation replaced (with the end of its grace).

    Decrypted here, per request, from the channel row the request already loaded: no query.
    """
    previous = channel.previous_secret if channel.previous_secret_until is not None else None
    return {"channel_secret": channel.secret, "channel_previous_secret": previous,
            "channel_previous_until": channel.previous_secret_until}


def public_settings(channel: Channel) -> dict:
    """The settings as the API and the UI show them: secrets only as set / not set."""
    stored = stored_settings(channel)
    out = {}
    for f in adapter_for(channel.kind).settings_fields:
        if f.secret:
            out[f.name] = {"set": bool(stored.get(f.name))}
        else:
            out[f.name] = stored.get(f.name, f.default)
    return out


def update_settings(channel: Channel, values: dict) -> dict:
    """Store the given fields (a secret left out or empty keeps its value); returns secrets
    the appliance generated, which the caller shows once and never again."""
    adapter = adapter_for(channel.kind)
    fields = {f.name: f for f in adapter.settings_fields}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ServiceError(f"Unknown setting {unknown[0]!r} for a {channel.kind} channel; "
                           f"known: {', '.join(fields) or 'none'}.", 422)
    stored = stored_settings(channel)
    generated = {}
    for name, value in values.items():
        f = fields[name]
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ServiceError(f"{name} must be text.", 422)
        value = value.strip()
        if len(value) > MAX_VALUE:
            raise ServiceError(f"{name} is limited to {MAX_VALUE} characters.", 422)
        if f.secret and not value:
            continue  # write-only: an empty field means "keep the current one"
        if name == "rate_per_minute" and value and not (value.isdigit() and 0 < int(value) <= 100_000):
            raise ServiceError("rate_per_minute must be a whole number of replies per minute (1 or more).", 422)
        if name.endswith("url") and value and not value.startswith(("https://", "http://")):
            raise ServiceError(f"{name} must be an http:// or https:// URL.", 422)
        stored[name] = value
    for f in fields.values():
        if f.generate and not stored.get(f.name):
            stored[f.name] = generated[f.name] = secrets.token_urlsafe(24)
    missing = [f.label for f in fields.values() if f.required and not stored.get(f.name)]
    row = config_row(channel)
    row.settings = stored
    row.updated_at = utcnow()
    row.save()
    return {"generated": generated, "missing": missing}


# How stale a channel's "last inbound" time may be: a busy channel then writes it once
# per this interval, not once per message.
INBOUND_MARK_STEP = dt.timedelta(seconds=10)


def record_inbound(channel: Channel) -> None:
    row = _prefetched(channel)
    if row not in (..., None) and row.last_inbound_at is not None and (
            timedelta_since(row.last_inbound_at) < INBOUND_MARK_STEP):
        return
    if not ChannelConfig.update(last_inbound_at=utcnow()).where(ChannelConfig.channel == channel.id).execute():
        config_row(channel)
        ChannelConfig.update(last_inbound_at=utcnow()).where(ChannelConfig.channel == channel.id).execute()


def record_error(channel: Channel, reason: str | None) -> None:
    """The last error of a channel (None clears it); the reason is the service's words, no message content."""
    if reason is None:  # the common case after every good send: one UPDATE that usually touches nothing
        ChannelConfig.update(last_error=None, last_error_at=None).where(
            ChannelConfig.channel == channel.id, ChannelConfig.last_error.is_null(False)).execute()
        return
    config_row(channel)
    ChannelConfig.update(last_error=(reason or None) and reason[:500],
                         last_error_at=utcnow() if reason else None).where(
        ChannelConfig.channel == channel.id).execute()


def status(channel: Channel) -> dict:
    row = ChannelConfig.get_or_none(ChannelConfig.channel == channel.id)

    def stamp(value):
        return value.isoformat() + "Z" if value else None

    return {
        "last_inbound_at": stamp(row.last_inbound_at) if row else None,
        "last_error": row.last_error if row else None,
        "last_error_at": stamp(row.last_error_at) if row else None,
        # A rotated-out signing secret still verifying, and whether the sender still uses it.
        "previous_secret_until": stamp(channel.previous_secret_until),
        "previous_secret_used_at": stamp(channel.previous_secret_used_at),
    }


def load_poll_state(row: ChannelConfig) -> dict:
    try:
        value = json.loads(row.poll_state or "{}")
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}
