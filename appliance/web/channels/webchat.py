"""Web chat: the widget posts through its own routes and reads replies by itself,
so this adapter receives no hooks and sends nothing."""

from __future__ import annotations

from appliance.web.channels.base import Adapter


class WebchatAdapter(Adapter):
    kind = "webchat"
    sends = False
