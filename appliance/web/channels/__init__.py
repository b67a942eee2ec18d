"""Channel adapters: one module per kind, registered here and nowhere else.

``ADAPTERS`` maps a kind to its adapter class; ``adapter_for(kind)`` hands out an
instance. The kinds are exactly ``models.contact_center.CHANNEL_KINDS``
(tests/test_channel_adapters.py holds the two together).
"""

from __future__ import annotations

from appliance.web.channels.base import Adapter
from appliance.web.channels.telegram import TelegramAdapter
from appliance.web.channels.vk import VkAdapter
from appliance.web.channels.webchat import WebchatAdapter
from appliance.web.channels.webhook import WebhookAdapter
from appliance.web.channels.whatsapp import WhatsappAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "webchat": WebchatAdapter,
    "webhook": WebhookAdapter,
    "telegram": TelegramAdapter,
    "whatsapp": WhatsappAdapter,
    "vk": VkAdapter,
}



def _email_adapter() -> type[Adapter]:
    """The e-mail package's adapter; until it is installed, e-mail channels keep taking
    signed JSON from a mail gateway exactly like the generic webhook."""
    from importlib import import_module, util

    if util.find_spec("appliance.web.channels.email") is not None:
        return import_module("appliance.web.channels.email.adapter").EmailAdapter

    class GatewayEmailAdapter(WebhookAdapter):
        kind = "email"

    return GatewayEmailAdapter


ADAPTERS["email"] = _email_adapter()


def adapter_for(kind: str) -> Adapter:
    try:
        return ADAPTERS[kind]()
    except KeyError:
        raise LookupError(f"no adapter for channel kind {kind!r}") from None
