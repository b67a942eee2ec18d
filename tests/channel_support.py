"""Shared set-up for the channel tests: a channel of a kind pointed at its loopback double."""

from __future__ import annotations

from appliance.web.channels import config as channel_config
from appliance.web.jobs import run_round
from appliance.web.models.channels import OutboxMessage
from appliance.web.models.contact_center import Channel
from appliance.web.services import conversations
from appliance.web.services.outbox import outbox_job


def make_channel(app, tenant, kind, settings: dict, name=None) -> tuple[Channel, dict]:
    """A channel of ``kind`` with ``settings``; returns it and the secrets the appliance generated."""
    with app.app_context():
        channel = Channel.create(tenant=tenant, kind=kind, name=name or f"{kind} test")
        result = channel_config.update_settings(channel, settings)
        return channel, result["generated"]


def reply(app, conv, text, author=None):
    with app.app_context():
        return conversations.add_message(conv, "out", text, author)


def drain(app):
    """One worker round of the outbox job (as ``appliance worker`` runs it)."""
    failures = run_round(app, [outbox_job])
    assert not failures, failures


def outbox_row(message) -> OutboxMessage:
    return OutboxMessage.get(OutboxMessage.message == message.id)
