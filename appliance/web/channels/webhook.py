"""The generic webhook: JSON signed with the channel's secret, both ways.

A delivery carries ``X-Timestamp`` (Unix seconds) and ``X-Signature: sha256=<hex
HMAC-SHA256(secret, timestamp + "." + raw body)>``. Signing the time with the body is
what makes a captured delivery useless later: one outside the tolerance window is
refused, and one inside it is refused the second time (its digest is stored as the
item's id). Replies go to the configured callback URL, signed the same way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from appliance.core import clock
from appliance.web.channels import http
from appliance.web.channels.base import (
    EXPIRED_SECRET,
    RATE_FIELD,
    Adapter,
    Inbound,
    InboundFile,
    Outbound,
    PermanentFailure,
    Refused,
    Sent,
    SettingField,
    expired_secret_reason,
    same_secret,
    which_secret,
)
from appliance.web.services import ServiceError, attachments
from appliance.web.validation import F, json_object

MAX_BODY = 20_000
FIELDS = {
    "id": F("string", max_length=200, nullable=True),
    "sender_id": F("string", max_length=200, nullable=True),
    "name": F("string", max_length=200, nullable=True),
    "email": F("string", max_length=254, nullable=True),
    "phone": F("string", max_length=40, nullable=True),
    "body": F("string", max_length=MAX_BODY, nullable=True),
    "files": F("array", max_length=attachments.MAX_FILES, nullable=True,
               description="[{filename, content_type, data (base64)}]"),
}


def _file(item) -> InboundFile:
    """One ``files`` entry, checked against the attachment limits before anything is stored."""
    if not isinstance(item, dict) or not isinstance(item.get("data"), str) or not isinstance(
            item.get("filename", ""), str) or not isinstance(item.get("content_type", ""), str):
        raise ServiceError("Each of files must be an object {filename, content_type, data (base64)}.", 422)
    upload = attachments.Upload(item.get("filename", ""), item.get("content_type", ""),
                                attachments.decode_base64(item["data"], "files[].data"))
    clean = attachments.check_file(upload)
    return InboundFile(filename=clean.filename, content_type=clean.content_type, data=upload.data)


def signature(secret: str, timestamp: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()


def signed_headers(secret: str, raw: bytes, now: int | None = None) -> dict:
    """Headers for a delivery of ``raw``, signed at ``now`` (the appliance's clock by default)."""
    stamp = str(int(clock.now().timestamp()) if now is None else now)
    return {"X-Timestamp": stamp, "X-Signature": signature(secret, stamp, raw)}


class WebhookAdapter(Adapter):
    kind = "webhook"
    settings_fields = (
        SettingField("callback_url", "Callback URL for replies (empty: replies are not delivered)"),
        RATE_FIELD,
    )

    def delivers(self, settings) -> bool:
        return bool(settings.get("callback_url"))  # inbound-only gateways keep replies in the appliance

    def verify(self, settings, headers, raw_body, query):
        stamp = headers.get("X-Timestamp", "")
        if not stamp.isdigit() or len(stamp) > 12:
            raise Refused(401, "X-Timestamp must be the Unix time (seconds) at which the delivery was signed.")
        given = headers.get("X-Signature", "")
        used = which_secret(settings, lambda secret: same_secret(given, signature(secret, stamp, raw_body)))
        if used == EXPIRED_SECRET:
            raise Refused(401, "X-Signature is " + expired_secret_reason(settings))
        if used is None:
            raise Refused(401, "X-Signature must be sha256=<hex HMAC-SHA256 of timestamp + '.' + body "
                               "with the channel secret>.")
        skew = abs(clock.now().timestamp() - int(stamp))
        tolerance = settings["tolerance_seconds"]
        if skew > tolerance:
            raise Refused(401, f"X-Timestamp is {int(skew)} s away from the server's clock (at most {tolerance} s "
                               "allowed): a stale or replayed delivery. Sign each delivery when it is sent.")
        return used  # PREVIOUS_SECRET: the caller notes that the sender still has to switch

    def parse(self, settings, headers, raw_body, query):
        data = json_object(raw_body, FIELDS)
        data = {k: (v.strip() or None) if isinstance(v, str) and k != "body" else v for k, v in data.items()}
        files = [_file(item) for item in data.get("files") or []]
        if not (data.get("body") or "").strip() and not files:
            raise ServiceError("A message needs a non-empty body or a file.", 422)
        # The gateway's own id when it sends one; otherwise the signed delivery itself.
        key = "id:" + data["id"] if data.get("id") else "sig:" + hashlib.sha256(
            headers.get("X-Signature", "").encode()).hexdigest()
        return [Inbound(external_id=key, sender_id=data.get("sender_id") or "", text=data.get("body") or "",
                        sender_name=data.get("name"), email=data.get("email"), phone=data.get("phone"),
                        files=files)]

    def send(self, settings, out: Outbound) -> Sent:
        url = settings.get("callback_url") or ""
        if not url:
            raise PermanentFailure("This webhook channel has no callback URL: set one in the channel's settings.")
        document = {"message_id": out.message_uid, "conversation_id": out.conversation_uid,
                    "recipient_id": out.recipient_id or None, "body": out.text}
        if out.files:  # the agent's files, in the shape inbound deliveries use (one signed call)
            document["files"] = [{"filename": f.filename, "content_type": f.content_type,
                                  "data": base64.b64encode(f.data).decode("ascii")} for f in out.files]
        raw = json.dumps(document).encode()
        headers = signed_headers(settings["channel_secret"], raw) | {
            "Content-Type": "application/json", "Idempotency-Key": out.idempotency_key}
        http.call("POST", url, data=raw, headers=headers, timeout=settings["timeout"])
        return Sent(external_id=None)

    def test_connection(self, settings) -> str:
        if not settings.get("callback_url"):
            return "Inbound only: no callback URL is set, so replies stay in the appliance."
        raw = json.dumps({"ping": True}).encode()
        headers = signed_headers(settings["channel_secret"], raw) | {"Content-Type": "application/json"}
        http.call("POST", settings["callback_url"], data=raw, headers=headers, timeout=settings["timeout"])
        return "The callback URL accepted a signed ping."
