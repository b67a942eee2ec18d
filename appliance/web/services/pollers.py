"""Fetching inbound items for channels that poll (Telegram getUpdates, VK long poll, ...).

Once across app hosts: on PostgreSQL the channel's config row is locked with
``FOR UPDATE SKIP LOCKED`` for the whole poll, so a second host skips the channel
instead of fetching the same updates; the items and the new position are committed
together. On SQLite (one host) the poll runs outside a transaction, so the web app is
never blocked behind a long poll; items are stored before the position moves, and the
inbound ledger drops what a crash in between makes the next poll fetch again.
"""

from __future__ import annotations

import json
import logging

from appliance.web.channels import adapter_for
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import DeliveryStatus, PermanentFailure, TemporaryFailure
from appliance.web.channels.ingest import store_inbound
from appliance.web.db import database_proxy, is_postgres, write_transaction
from appliance.web.models.channels import ChannelConfig
from appliance.web.models.contact_center import Channel
from appliance.web.models.tenancy import Tenant
from appliance.web.services import outbox

log = logging.getLogger("appliance.web.pollers")


def polling_channels() -> list[Channel]:
    return list(Channel.select().join(Tenant).where(
        Channel.kind.in_(_polling_kinds()), Channel.is_active == True, Tenant.is_active == True).order_by(Channel.id))


def _polling_kinds() -> list[str]:
    from appliance.web.channels import ADAPTERS

    return [kind for kind, cls in ADAPTERS.items() if cls.polls]


def poll_channel(channel: Channel) -> int | None:
    """Poll one channel; the number of new messages, or None when another host holds it."""
    adapter = adapter_for(channel.kind)
    settings = channel_config.settings_for(channel)
    channel_config.config_row(channel)
    if is_postgres():
        with database_proxy.atomic():
            row = (ChannelConfig.select().where(ChannelConfig.channel == channel.id)
                   .for_update(skip_locked=True).first())
            if row is None:
                return None
            return _poll(channel, adapter, settings, row)
    row = ChannelConfig.get(ChannelConfig.channel == channel.id)
    return _poll(channel, adapter, settings, row)


def _poll(channel, adapter, settings, row) -> int:
    state = channel_config.load_poll_state(row)
    try:
        items, new_state = adapter.poll(settings, state)
    except (TemporaryFailure, PermanentFailure) as exc:
        channel_config.record_error(channel, f"Polling: {exc.reason}")
        return 0
    # A poll hands out the service's receipts for our replies along with new messages.
    receipts = [i for i in items if isinstance(i, DeliveryStatus)]
    items = [i for i in items if not isinstance(i, DeliveryStatus)]
    with write_transaction():
        made = store_inbound(channel, items)
        if receipts:
            outbox.record_statuses(channel, receipts)
        if new_state != state:
            ChannelConfig.update(poll_state=json.dumps(new_state)).where(ChannelConfig.id == row.id).execute()
    return len(made)


def poll_job(app) -> None:
    """Worker job: poll every channel set to receive by polling (one failing channel does not stop the rest)."""
    for channel in polling_channels():
        if channel_config.settings_for(channel).get("receive") != "polling":
            continue
        try:
            poll_channel(channel)
        except Exception:
            log.exception("polling channel %s failed", channel.id)
            channel_config.record_error(channel, "Polling failed with an internal error; see the worker log.")
