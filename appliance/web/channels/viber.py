"""Viber REST bot API: signed callbacks, ``send_message``, delivery and read receipts.

Every callback carries ``X-Viber-Content-Signature``: the hex HMAC-SHA256 of the raw
body keyed with the bot's auth token, checked before a byte is parsed. Outbound calls
send the token as ``X-Viber-Auth-Token``. Viber answers HTTP 200 even for errors; the
``status`` field says what happened (0 is ok, 12 is "too many requests").

Events: ``message`` becomes an inbound message, keyed by its ``message_token``;
``delivered``, ``seen`` and ``failed`` name the ``message_token`` of one of our replies
and become its delivery status; ``webhook`` (Viber's check after ``set_webhook``),
``subscribed``, ``unsubscribed`` and ``conversation_started`` are acknowledged and
otherwise ignored (nothing for an agent to read). Viber needs a public HTTPS URL for the
callbacks: an air-gapped site points ``set_webhook`` at a relay in its DMZ that forwards
the raw body and the header unchanged (``webhook_url`` below).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from appliance.web.channels import http
from appliance.web.channels.base import (
    RATE_FIELD,
    Adapter,
    DeliveryStatus,
    Inbound,
    InboundFile,
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

DEFAULT_API = "https://chatapi.viber.com/pa"
# What set_webhook subscribes to: messages, receipts and the conversation's start and end.
EVENT_TYPES = ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
SENDER_NAME_MAX = 28  # Viber's limit for sender.name
MAX_FILE = 50 * 1024 * 1024  # Viber's own limit for a file message
TEMPORARY_STATUSES = {12}  # tooManyRequests; everything else non-zero is the request's own fault
RECEIPTS = {"delivered": "delivered", "seen": "read", "failed": "failed"}
MEDIA_TYPES = {"picture": ("photo.jpg", "image/jpeg"), "video": ("video.mp4", "video/mp4"),
               "file": ("file", "application/octet-stream")}
_SAFE_NAME = re.compile(r"[^\w.\- ]+")


def signature(auth_token: str, raw: bytes) -> str:
    return hmac.new(auth_token.encode(), raw, hashlib.sha256).hexdigest()


def _token_id(value) -> str | None:
    """A message_token (a 64-bit number in JSON) as the text we key it by."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        return None
    return str(value)[:64]


class ViberAdapter(Adapter):
    kind = "viber"
    settings_fields = (
        SettingField("auth_token", "Auth token (the bot's key from the Viber admin panel)", secret=True,
                     required=True),
        SettingField("sender_name", f"Sender name shown with replies (at most {SENDER_NAME_MAX} characters)",
                     required=True),
        SettingField("webhook_url", "Public callback URL to register with set_webhook on test connection "
                                    "(this channel's hook URL, or the DMZ relay's; empty: do not register)"),
        SettingField("api_base_url", "REST API base URL (a relay in the DMZ)", default=DEFAULT_API),
        RATE_FIELD,
    )

    def _call(self, settings, name, body, *, timeout=None) -> dict:
        if not settings.get("auth_token"):
            raise PermanentFailure("No auth token is set for this Viber channel.")
        answer = http.call("POST", f"{http.base_url(settings, DEFAULT_API)}/{name}",
                           timeout=timeout or settings["timeout"],
                           headers={"X-Viber-Auth-Token": settings["auth_token"]}, json=body)
        status = answer.get("status")
        if status != 0:
            reason = f"Viber refused {name}: {answer.get('status_message') or status}"[:500]
            if status in TEMPORARY_STATUSES:
                raise TemporaryFailure(reason)
            raise PermanentFailure(reason)
        return answer

    # -- inbound -----------------------------------------------------------------------

    def verify(self, settings, headers, raw_body, query):
        if not settings.get("auth_token"):
            raise Refused(503, "This Viber channel has no auth token yet: callbacks cannot be verified.")
        if not same_secret(headers.get("X-Viber-Content-Signature", "").lower(),
                           signature(settings["auth_token"], raw_body)):
            raise Refused(401, "X-Viber-Content-Signature must be the hex HMAC-SHA256 of the raw body with the "
                               "bot's auth token.")

    def parse(self, settings, headers, raw_body, query):
        data = json_document(raw_body)
        if data.get("event") != "message":
            return []
        token, sender = _token_id(data.get("message_token")), dig(data, "sender", "id")
        message = dig(data, "message", default={})
        if token is None or not isinstance(sender, str) or not sender or not isinstance(message, dict):
            return []
        kind = message.get("type")
        text = message.get("text") if isinstance(message.get("text"), str) else ""
        if kind == "contact":
            contact = message.get("contact") if isinstance(message.get("contact"), dict) else {}
            text = text or f"[contact: {contact.get('name') or ''} {contact.get('phone_number') or ''}]".strip()
        elif kind == "location":
            text = text or f"[location: {dig(message, 'location', 'lat')}, {dig(message, 'location', 'lon')}]"
        elif kind == "url" and isinstance(message.get("media"), str):
            text = text or message["media"]
        name = dig(data, "sender", "name")
        return [Inbound(external_id=token, sender_id=sender, text=text,
                        sender_name=name[:200] if isinstance(name, str) and name else None,
                        files=self._files(settings, message))]

    def statuses(self, settings, headers, raw_body, query) -> list[DeliveryStatus]:
        data = json_document(raw_body)
        status = RECEIPTS.get(data.get("event"))
        token = _token_id(data.get("message_token"))
        if status is None or token is None:
            return []
        desc = data.get("desc")
        return [DeliveryStatus(external_id=token, status=status,
                               reason=str(desc)[:500] if status == "failed" and desc else None)]

    def _files(self, settings, message) -> list[InboundFile]:
        kind = message.get("type")
        media = message.get("media")
        if kind not in MEDIA_TYPES or not isinstance(media, str) or not media.startswith(("https://", "http://")):
            return []
        name, content_type = MEDIA_TYPES[kind]
        if isinstance(message.get("file_name"), str) and message["file_name"].strip():
            name = message["file_name"]
        return [http.inbound_file(_SAFE_NAME.sub("_", name)[:200], content_type,
                                  lambda most: http.download(media, timeout=settings["timeout"], max_bytes=most,
                                                             too_large="over Viber's 50 MB limit"),
                                  service_max=MAX_FILE, service_limit="over Viber's 50 MB limit")]

    # -- outbound ----------------------------------------------------------------------

    def send(self, settings, out: Outbound) -> Sent:
        if not out.recipient_id:
            raise PermanentFailure("No Viber user is known for this contact.")
        sender = (settings.get("sender_name") or "").strip()[:SENDER_NAME_MAX]
        if not sender:
            raise PermanentFailure("Set the sender name of this Viber channel (Viber requires one).")
        # Viber de-duplicates nothing; tracking_data carries our key so a repeat can be traced.
        body = self._call(settings, "send_message", {
            "receiver": out.recipient_id, "min_api_version": 1, "sender": {"name": sender},
            "tracking_data": out.idempotency_key, "type": "text", "text": out.text})
        return Sent(external_id=_token_id(body.get("message_token")))

    def test_connection(self, settings) -> str:
        info = self._call(settings, "get_account_info", {})
        message = f"Connected to Viber bot {info.get('name') or info.get('id') or '?'}."
        if settings.get("webhook_url"):
            self._call(settings, "set_webhook", {"url": settings["webhook_url"], "event_types": EVENT_TYPES,
                                                 "send_name": True, "send_photo": False})
            message += " Callbacks registered with set_webhook."
        return message
