"""VK Callback API and Bots Long Poll: confirmation, the ``secret`` field, messages.send.

The first request (``type: confirmation``) is answered with the group's confirmation
string; every other event must be answered ``ok`` or VK retries and eventually pauses
the server. ``event_id`` is the de-duplication key; ``random_id`` makes a send idempotent.
VK answers HTTP 200 even for errors: the error code says which are worth retrying.
VK reports no delivery, only reading: ``message_read`` (enable it among the server's
event types) names the last message a peer has read, so every reply to that peer up to
it is marked read. Failures are known only from ``messages.send``'s own answer.
"""

from __future__ import annotations

import zlib

from flask import make_response

from appliance.web.channels import http
from appliance.web.channels.base import (
    RATE_FIELD,
    Adapter,
    DeliveryStatus,
    Inbound,
    Outbound,
    PermanentFailure,
    Refused,
    Sent,
    SettingField,
    TemporaryFailure,
    dig,
    json_document,
    same_secret,
)

DEFAULT_API = "https://api.vk.com/method"
API_VERSION = "5.199"
TEMPORARY_ERRORS = {1, 6, 9, 10}  # unknown, too many requests per second, flood control, internal


def _text(response_body: str):
    response = make_response(response_body, 200)
    response.mimetype = "text/plain"
    return response


class VkAdapter(Adapter):
    kind = "vk"
    polls = True
    settings_fields = (
        SettingField("group_id", "Community (group) ID", required=True),
        SettingField("access_token", "Community access token", secret=True, required=True),
        SettingField("confirmation", "Confirmation string (shown by VK for the server)"),
        SettingField("secret", "Secret key (enter the same in VK)", secret=True, generate=True),
        SettingField("receive", "Receive events by: webhook or polling", default="webhook"),
        SettingField("api_base_url", "API base URL", default=DEFAULT_API),
        RATE_FIELD,
    )

    def _call(self, settings, method, params, *, timeout=None) -> dict:
        if not settings.get("access_token"):
            raise PermanentFailure("No access token is set for this VK channel.")
        body = http.call("POST", f"{http.base_url(settings, DEFAULT_API)}/{method}",
                         timeout=timeout or settings["timeout"],
                         data=dict(params, access_token=settings["access_token"], v=API_VERSION))
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("error_code")
            reason = f"VK refused {method}: {error.get('error_msg') or code}"[:500]
            if code in TEMPORARY_ERRORS:
                raise TemporaryFailure(reason, retry_after=1.0 if code in (6, 9) else None)
            raise PermanentFailure(reason)
        return body

    # -- inbound -----------------------------------------------------------------------

    def handshake(self, settings, headers, raw_body, query):
        data = json_document(raw_body)
        if data.get("type") != "confirmation":
            return None
        if str(data.get("group_id")) != str(settings.get("group_id")) or not settings.get("confirmation"):
            raise Refused(403, "This channel is not set up for that VK community (group_id / confirmation).")
        return _text(settings["confirmation"])

    def verify(self, settings, headers, raw_body, query):
        if settings.get("receive") == "polling":
            raise Refused(409, "This VK channel receives by long polling; its callback server is off.")
        if not same_secret(json_document(raw_body).get("secret"), settings.get("secret")):
            raise Refused(401, "The secret field does not match the channel's secret key.")

    def parse(self, settings, headers, raw_body, query):
        return self._items([json_document(raw_body)])

    def statuses(self, settings, headers, raw_body, query):
        return self._receipts([json_document(raw_body)])

    @staticmethod
    def _receipts(events) -> list[DeliveryStatus]:
        out = []
        for event in events:
            if dig(event, "type") != "message_read":
                continue
            peer, last = dig(event, "object", "peer_id"), dig(event, "object", "read_message_id")
            if isinstance(peer, int) and isinstance(last, int):
                out.append(DeliveryStatus(external_id=str(last), status="read", recipient_id=str(peer), up_to=True))
        return out

    def acknowledge(self, stored):
        return _text("ok")

    def _items(self, events) -> list[Inbound]:
        out = []
        for event in events:
            if dig(event, "type") != "message_new":
                continue
            message = dig(event, "object", "message")
            peer = dig(message, "peer_id")
            if not isinstance(peer, int):
                continue
            key = dig(event, "event_id")
            key = str(key) if key else f"message:{dig(message, 'id')}"
            out.append(Inbound(external_id=key, sender_id=str(peer), text=str(dig(message, "text") or "")))
        return out

    def poll(self, settings, state):
        if settings.get("receive") != "polling":
            return [], state
        server = dig(self._call(settings, "groups.getLongPollServer", {"group_id": settings.get("group_id")}),
                     "response", default={})
        if not isinstance(server, dict) or not server.get("server"):
            raise TemporaryFailure("VK gave no long-poll server.")
        ts = state.get("ts") or server.get("ts")
        wait = int(settings["poll_wait"])
        body = http.call("GET", server["server"], timeout=wait + settings["timeout"],
                         params={"act": "a_check", "key": server.get("key"), "ts": ts, "wait": wait})
        if body.get("failed") == 1:  # events were lost on VK's side: go on from its ts
            return [], dict(state, ts=body.get("ts"))
        if body.get("failed"):
            return [], dict(state, ts=None)  # key or ts expired: start again from the server's
        events = [e for e in body.get("updates") or [] if isinstance(e, dict)]
        return self._items(events) + self._receipts(events), dict(state, ts=body.get("ts", ts))

    # -- outbound ----------------------------------------------------------------------

    def send(self, settings, out: Outbound) -> Sent:
        if not out.recipient_id:
            raise PermanentFailure("No VK conversation is known for this contact.")
        # random_id: VK drops a second send with the same id, so a retry after a lost answer is harmless.
        random_id = zlib.crc32(out.idempotency_key.encode()) & 0x7FFFFFFF
        body = self._call(settings, "messages.send",
                          {"peer_id": out.recipient_id, "message": out.text, "random_id": random_id})
        return Sent(external_id=str(body.get("response")) if body.get("response") is not None else None)

    def test_connection(self, settings) -> str:
        body = self._call(settings, "groups.getById", {"group_id": settings.get("group_id")})
        return f"Connected to VK community {settings.get('group_id')} ({'found' if body.get('response') else '?'})."
