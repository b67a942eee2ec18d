"""VK Callback API and Bots Long Poll: confirmation, the ``secret`` field, messages.send.

The first request (``type: confirmation``) is answered with the group's confirmation
string; every other event must be answered ``ok`` or VK retries and eventually pauses
the server. ``event_id`` is the de-duplication key; ``random_id`` makes a send idempotent.
VK answers HTTP 200 even for errors: the error code says which are worth retrying.
A message's files (``attachments``: a photo at its largest size, a doc by its ``url``) are
fetched by the URLs the event gives. An agent's files go up first: ``docs.getMessagesUploadServer``
hands out an upload URL, the file is POSTed there (multipart), ``docs.save`` turns the answer
into a doc, and ``messages.send`` carries them as ``doc<owner_id>_<id>`` with the text. The
uploads show the customer nothing, so a retry after a failed step starts over harmlessly.
VK reports no delivery, only reading: ``message_read`` (enable it among the server's
event types) names the last message a peer has read, so every reply to that peer up to
it is marked read. Failures are known only from ``messages.send``'s own answer.
"""

from __future__ import annotations

import mimetypes
import zlib

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
    TemporaryFailure,
    dig,
    json_document,
    same_secret,
)

DEFAULT_API = "https://api.vk.com/method"
API_VERSION = "5.199"
TEMPORARY_ERRORS = {1, 6, 9, 10}  # unknown, too many requests per second, flood control, internal
MAX_FILE = 200 * 1024 * 1024  # VK's largest doc
TOO_LARGE = "over VK's 200 MB limit for a doc"


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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
        return self._items([json_document(raw_body)], settings)

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

    def _items(self, events, settings) -> list[Inbound]:
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
            out.append(Inbound(external_id=key, sender_id=str(peer), text=str(dig(message, "text") or ""),
                               files=self._files(settings, message)))
        return out

    @staticmethod
    def _wanted(message) -> list[tuple[str, str, str, int | None]]:
        """(URL, file name, content type, declared size) of each photo and doc the message carries."""
        wanted = []
        for item in dig(message, "attachments", default=[]) or []:
            kind = dig(item, "type")
            if kind == "photo":
                sizes = [s for s in dig(item, "photo", "sizes", default=[]) or []
                         if isinstance(s, dict) and isinstance(s.get("url"), str)]
                if sizes:  # sizes without dimensions (older shapes) are listed smallest first
                    largest = max(reversed(sizes), key=lambda s: _int(s.get("width")) * _int(s.get("height")))
                    wanted.append((largest["url"], "photo.jpg", "image/jpeg", None))
            elif kind == "doc" and isinstance(dig(item, "doc", "url"), str):
                doc = item["doc"]
                title, ext = str(doc.get("title") or "document"), str(doc.get("ext") or "")
                name = title if not ext or title.lower().endswith(f".{ext.lower()}") else f"{title}.{ext}"
                wanted.append((doc["url"], name, mimetypes.guess_type(name)[0] or "application/octet-stream",
                               doc.get("size")))
        return [w for w in wanted if w[0].startswith(("https://", "http://"))]

    def _files(self, settings, message) -> list[InboundFile]:
        # The name is cleaned where files are stored.
        return [http.inbound_file(name[:200], content_type,
                                  lambda most, url=url: http.download(url, timeout=settings["timeout"],
                                                                      max_bytes=most, too_large=TOO_LARGE),
                                  service_max=MAX_FILE, service_limit=TOO_LARGE, size=size)
                for url, name, content_type, size in self._wanted(message)]

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
        return self._items(events, settings) + self._receipts(events), dict(state, ts=body.get("ts", ts))

    # -- outbound ----------------------------------------------------------------------

    def send(self, settings, out: Outbound) -> Sent:
        if not out.recipient_id:
            raise PermanentFailure("No VK conversation is known for this contact.")
        # random_id: VK drops a second send with the same id, so a retry after a lost answer is harmless.
        random_id = zlib.crc32(out.idempotency_key.encode()) & 0x7FFFFFFF
        params = {"peer_id": out.recipient_id, "message": out.text, "random_id": random_id}
        if out.files:
            params["attachment"] = ",".join(self._upload(settings, out.recipient_id, f) for f in out.files)
        body = self._call(settings, "messages.send", params)
        return Sent(external_id=str(body.get("response")) if body.get("response") is not None else None)

    def _upload(self, settings, peer_id, f: InboundFile) -> str:
        """One file as a doc for ``peer_id``'s conversation: its ``doc<owner_id>_<id>``."""
        server = self._call(settings, "docs.getMessagesUploadServer", {"peer_id": peer_id, "type": "doc"})
        upload_url = dig(server, "response", "upload_url")
        if not isinstance(upload_url, str) or not upload_url.startswith(("https://", "http://")):
            raise PermanentFailure("VK's docs.getMessagesUploadServer gave no upload_url.")
        uploaded = http.call("POST", upload_url, timeout=settings["timeout"],
                             files={"file": (f.filename, f.data, f.content_type)})
        if not isinstance(uploaded.get("file"), str) or not uploaded["file"]:
            reason = uploaded.get("error_descr") or uploaded.get("error") or "no file in its answer"
            raise PermanentFailure(f"VK's upload server refused {f.filename}: {reason}"[:500])
        doc = dig(self._call(settings, "docs.save", {"file": uploaded["file"], "title": f.filename}), "response", "doc")
        if not isinstance(dig(doc, "owner_id"), int) or not isinstance(dig(doc, "id"), int):
            raise PermanentFailure("VK's docs.save gave no doc (owner_id, id).")
        return f"doc{doc['owner_id']}_{doc['id']}"

    def test_connection(self, settings) -> str:
        body = self._call(settings, "groups.getById", {"group_id": settings.get("group_id")})
        return f"Connected to VK community {settings.get('group_id')} ({'found' if body.get('response') else '?'})."
