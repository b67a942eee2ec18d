"""WhatsApp Cloud API (Meta): the verify handshake, X-Hub-Signature-256, /messages.

Every POST is checked against ``sha256=<hex HMAC-SHA256(app secret, raw body)>`` before
a byte of it is parsed. The wamid (``messages[].id``) is the de-duplication key.
Receipts for our replies arrive in ``value.statuses[]`` (sent, delivered, read, failed
with ``errors[]``), each naming the wamid that ``/messages`` gave the reply. A media
message's file is fetched by its id (``GET /<media id>`` gives a short-lived URL, read
with the same token); an agent's file is uploaded to ``/media`` and sent as a document.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes

from flask import make_response

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
    dig,
    json_document,
    same_secret,
)

DEFAULT_API = "https://graph.facebook.com/v21.0"
CAPTION_MAX = 1024  # characters of text WhatsApp sends with a document
MAX_FILE = 100 * 1024 * 1024  # WhatsApp's largest media (documents)
TOO_LARGE = "over WhatsApp's 100 MB media limit"
MEDIA_KINDS = ("image", "document", "audio", "video", "sticker")


def signature(app_secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def _error_text(status: dict) -> str:
    """Meta's words for a failed delivery: ``errors[0]`` as "code title: details"."""
    error = dig(status, "errors", 0, default={})
    if not isinstance(error, dict):
        return "no reason given"
    details = dig(error, "error_data", "details") or error.get("message") or ""
    head = " ".join(str(x) for x in (error.get("code"), error.get("title")) if x)
    return (f"{head}: {details}" if head and details else head or str(details) or "no reason given")[:500]


class WhatsappAdapter(Adapter):
    kind = "whatsapp"
    settings_fields = (
        SettingField("phone_number_id", "Phone number ID", required=True),
        SettingField("access_token", "Access token", secret=True, required=True),
        SettingField("app_secret", "App secret (signs every post)", secret=True, required=True),
        SettingField("verify_token", "Verify token (for the webhook set-up)", secret=True, generate=True),
        SettingField("api_base_url", "Graph API base URL (with version)", default=DEFAULT_API),
        RATE_FIELD,
    )

    def handshake(self, settings, headers, raw_body, query):
        if query.get("hub.mode") is None:
            return None
        if query.get("hub.mode") != "subscribe" or not same_secret(query.get("hub.verify_token"),
                                                                   settings.get("verify_token")):
            raise Refused(403, "hub.verify_token does not match the channel's verify token.")
        response = make_response(str(query.get("hub.challenge", ""))[:200], 200)
        response.mimetype = "text/plain"
        return response

    def verify(self, settings, headers, raw_body, query):
        if not settings.get("app_secret"):
            raise Refused(503, "This WhatsApp channel has no app secret yet: posts cannot be verified.")
        if not same_secret(headers.get("X-Hub-Signature-256"), signature(settings["app_secret"], raw_body)):
            raise Refused(401, "X-Hub-Signature-256 must be sha256=<hex HMAC-SHA256 of the raw body with the "
                               "app secret>.")

    def parse(self, settings, headers, raw_body, query):
        out = []
        for value in self._values(json_document(raw_body)):
            names = {dig(c, "wa_id"): dig(c, "profile", "name") for c in value.get("contacts") or []
                     if isinstance(c, dict)}
            for message in value.get("messages") or []:
                wamid, sender = dig(message, "id"), dig(message, "from")
                if not isinstance(wamid, str) or not isinstance(sender, str):
                    continue
                text = dig(message, "text", "body") or dig(message, dig(message, "type", default=""),
                                                           "caption") or ""
                out.append(Inbound(external_id=wamid, sender_id=sender, text=str(text),
                                   sender_name=names.get(sender), phone="+" + sender.lstrip("+"),
                                   files=self._files(settings, message)))
        return out

    def _files(self, settings, message) -> list[InboundFile]:
        """A media message's file: its id asked for a short-lived URL, then fetched (both with the token)."""
        kind = dig(message, "type", default="")
        media = dig(message, kind) if kind in MEDIA_KINDS else None
        if not isinstance(media, dict) or not isinstance(media.get("id"), str) or not settings.get("access_token"):
            return []
        auth = {"Authorization": f"Bearer {settings['access_token']}"}
        content_type = str(media.get("mime_type") or "application/octet-stream").split(";")[0][:100]
        name = str(media.get("filename") or f"{kind}{mimetypes.guess_extension(content_type) or ''}")

        def fetch(most):
            info = http.call("GET", f"{http.base_url(settings, DEFAULT_API)}/{media['id']}", headers=auth,
                             timeout=settings["timeout"])
            if not isinstance(info.get("url"), str):
                raise PermanentFailure("WhatsApp gave no URL for the media id.")
            return http.download(info["url"], timeout=settings["timeout"], max_bytes=most, headers=auth,
                                 too_large=TOO_LARGE)

        # The name is cleaned where files are stored.
        return [http.inbound_file(name[:200], content_type, fetch, service_max=MAX_FILE, service_limit=TOO_LARGE,
                                  size=media.get("file_size"))]

    def statuses(self, settings, headers, raw_body, query):
        out = []
        for value in self._values(json_document(raw_body)):
            for item in value.get("statuses") or []:
                wamid, status = dig(item, "id"), dig(item, "status")
                if not isinstance(wamid, str) or status not in ("delivered", "read", "failed"):
                    continue  # "sent" only repeats what the send's answer said
                out.append(DeliveryStatus(external_id=wamid, status=status,
                                          reason=_error_text(item) if status == "failed" else None))
        return out

    @staticmethod
    def _values(data) -> list[dict]:
        return [value for entry in dig(data, "entry", default=[]) or []
                for change in dig(entry, "changes", default=[]) or []
                if isinstance(value := dig(change, "value", default={}), dict)]

    def send(self, settings, out: Outbound) -> Sent:
        if not out.recipient_id:
            raise PermanentFailure("No WhatsApp number is known for this contact.")
        if not settings.get("access_token") or not settings.get("phone_number_id"):
            raise PermanentFailure("Set the access token and the phone number ID of this WhatsApp channel.")
        base = f"{http.base_url(settings, DEFAULT_API)}/{settings['phone_number_id']}"
        auth = {"Authorization": f"Bearer {settings['access_token']}"}
        message = {"type": "text", "text": {"body": out.text}}
        if out.files:
            message = {"type": "document", "document": self._upload(settings, base, auth, out)}
        body = http.call("POST", f"{base}/messages", timeout=settings["timeout"], headers=auth,
                         json={"messaging_product": "whatsapp", "to": out.recipient_id, **message})
        return Sent(external_id=dig(body, "messages", 0, "id"))

    def _upload(self, settings, base, auth, out: Outbound) -> dict:
        """The file uploaded to /media first (an upload sends nothing to the customer, so a retry
        after it is harmless), then sent as one document with the text as its caption."""
        if len(out.files) > 1:
            raise PermanentFailure("WhatsApp sends one file per message: send each file in a reply of its own.")
        if len(out.text) > CAPTION_MAX:
            raise PermanentFailure(f"WhatsApp carries at most {CAPTION_MAX} characters of text with a file (its "
                                   "caption limit): send the text as a reply of its own, then the file.")
        f = out.files[0]
        uploaded = http.call("POST", f"{base}/media", timeout=settings["timeout"], headers=auth,
                             data={"messaging_product": "whatsapp", "type": f.content_type},
                             files={"file": (f.filename, f.data, f.content_type)})
        if not uploaded.get("id"):
            raise PermanentFailure("WhatsApp's media upload gave no id.")
        return {"id": uploaded["id"], "filename": f.filename, **({"caption": out.text} if out.text else {})}

    def test_connection(self, settings) -> str:
        if not settings.get("access_token") or not settings.get("phone_number_id"):
            raise PermanentFailure("Set the access token and the phone number ID first.")
        url = f"{http.base_url(settings, DEFAULT_API)}/{settings['phone_number_id']}"
        body = http.call("GET", url, timeout=settings["timeout"],
                         headers={"Authorization": f"Bearer {settings['access_token']}"})
        return f"Connected: {body.get('display_phone_number') or body.get('id') or 'number found'}."
