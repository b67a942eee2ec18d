"""Channel adapters: one module per kind, registered here and nowhere else.

``ADAPTERS`` maps a kind to its adapter class; ``adapter_for(kind)`` hands out an
instance. The kinds are exactly ``models.contact_center.CHANNEL_KINDS``
(tests/test_channel_adapters.py holds the two together).
"""

from __future__ import annotations

from appliance.web.channels.base import Adapter
from appliance.web.channels.email.adapter import EmailAdapter
from appliance.web.channels.telegram import TelegramAdapter
from appliance.web.channels.viber import ViberAdapter
from appliance.web.channels.vk import VkAdapter
from appliance.web.channels.webchat import WebchatAdapter
from appliance.web.channels.webhook import WebhookAdapter
from appliance.web.channels.whatsapp import WhatsappAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "webchat": WebchatAdapter,
    "webhook": WebhookAdapter,
    "email": EmailAdapter,
    "telegram": TelegramAdapter,
    "whatsapp": WhatsappAdapter,
    "vk": VkAdapter,
    "viber": ViberAdapter,
}


def adapter_for(kind: str) -> Adapter:
    try:
        return ADAPTERS[kind]()
    except KeyError:
        raise LookupError(f"no adapter for channel kind {kind!r}") from None
