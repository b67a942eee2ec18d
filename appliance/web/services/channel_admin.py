"""Channel administration the UI and the API share: settings forms, test connection, status.

Secrets are write-only: what an admin types is sealed at rest and never shown again;
a secret the appliance generates (a webhook token, a verify token) is handed back once,
in the answer to the change that made it.
"""

from __future__ import annotations

from flask import url_for

from appliance.web.channels import adapter_for
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import PermanentFailure, TemporaryFailure
from appliance.web.models.audit import record
from appliance.web.models.contact_center import Channel


def form_fields(channel: Channel) -> list[dict]:
    return [{"name": f.name, "label": f.label, "secret": f.secret, "required": f.required,
             "default": f.default, "generated": f.generate}
            for f in adapter_for(channel.kind).settings_fields]


def hook_url(channel: Channel) -> str | None:
    if channel.kind == "webchat":
        return None
    return url_for("public.hook", key=channel.public_key, _external=True)


def describe(channel: Channel) -> dict:
    """Everything the settings page and GET .../settings show (never a secret's value)."""
    return {
        "channel_id": channel.id,
        "kind": channel.kind,
        "fields": form_fields(channel),
        "settings": channel_config.public_settings(channel),
        "status": channel_config.status(channel),
        "hook_url": hook_url(channel),
    }


def update(channel: Channel, values: dict, actor_id=None) -> dict:
    result = channel_config.update_settings(channel, values)
    # Which fields changed, never their values: secrets stay out of the audit trail.
    record("channel.settings", actor_id=actor_id, tenant_id=channel.tenant_id, target=f"channel:{channel.id}",
           fields=sorted(values))
    return describe(channel) | {"generated_secrets": result["generated"], "missing": result["missing"]}


def test_connection(channel: Channel, actor_id=None) -> dict:
    adapter = adapter_for(channel.kind)
    try:
        message = adapter.test_connection(channel_config.settings_for(channel))
        ok = True
    except (PermanentFailure, TemporaryFailure) as exc:
        message, ok = exc.reason, False
    channel_config.record_error(channel, None if ok else f"Test connection: {message}")
    record("channel.test", actor_id=actor_id, tenant_id=channel.tenant_id, target=f"channel:{channel.id}", ok=ok)
    return {"ok": ok, "message": message}
