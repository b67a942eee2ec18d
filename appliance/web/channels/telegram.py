"""Telegram Bot API: webhook posts with the secret-token header, or getUpdates long polling.

Inbound posts carry ``X-Telegram-Bot-Api-Secret-Token`` (no HMAC: compared in constant
time). ``update_id`` is the de-duplication key; Telegram re-delivers until it gets a
2xx, so a repeat is answered 200 as well. Replies: ``sendMessage``; with files, one upload
(``sendDocument``, ``sendMediaGroup`` for several) with the text as caption; a 429 says
``parameters.retry_after``. The Bot API gives a bot no delivery or read receipts: a reply
is "sent" once ``sendMessage`` answered ok, and that stays its last word.
"""

from __future__ import annotations

import json
import re

from appliance.web.channels import http
from appliance.web.channels.base import (
    RATE_FIELD,
    Adapter,
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

DEFAULT_API = "https://api.telegram.org"
MAX_FILE = 20 * 1024 * 1024  # what getFile hands out at most
TOO_LARGE = "over Telegram's 20 MB download limit"
CAPTION_MAX = 1024  # characters of text Telegram sends with files
_SAFE_NAME = re.compile(r"[^\w.\- ]+")


def _retry_after(body: dict):
    value = dig(body, "parameters", "retry_after")
    return float(value) if isinstance(value, (int, float)) else None


class TelegramAdapter(Adapter):
    kind = "telegram"
    polls = True
    settings_fields = (
        SettingField("bot_token", "Bot token (from @BotFather)", secret=True, required=True),
        SettingField("secret_token", "Webhook secret token (pass it to setWebhook)", secret=True, generate=True),
        SettingField("receive", "Receive updates by: webhook or polling", default="webhook"),
        SettingField("api_base_url", "Bot API base URL (a relay or local Bot API server)", default=DEFAULT_API),
        RATE_FIELD,
    )

    def _method(self, settings, name):
        return f"{http.base_url(settings, DEFAULT_API)}/bot{settings.get('bot_token', '')}/{name}"

    def _call(self, settings, name, *, timeout=None, **kwargs) -> dict:
        if not settings.get("bot_token"):
            raise PermanentFailure("No bot token is set for this Telegram channel.")
        body = http.call("POST", self._method(settings, name), timeout=timeout or settings["timeout"],
                         retry_after=_retry_after, **kwargs)
        if body.get("ok") is not True:
            if body.get("error_code") == 429:
                raise TemporaryFailure("Telegram is rate limiting (429).", retry_after=_retry_after(body))
            raise PermanentFailure(f"Telegram refused {name}: {http.describe(body) or 'no reason given'}"[:500])
        return body

    # -- inbound -----------------------------------------------------------------------

    def verify(self, settings, headers, raw_body, query):
        if settings.get("receive") == "polling":
            raise Refused(409, "This Telegram channel receives by polling; its webhook is off.")
        if not same_secret(headers.get("X-Telegram-Bot-Api-Secret-Token"), settings.get("secret_token")):
            raise Refused(401, "X-Telegram-Bot-Api-Secret-Token does not match the channel's secret token.")

    def parse(self, settings, headers, raw_body, query):
        return self._items([json_document(raw_body)], settings)

    def _items(self, updates, settings) -> list[Inbound]:
        out = []
        for update in updates:
            update_id = dig(update, "update_id")
            message = dig(update, "message")
            if not isinstance(update_id, int) or not isinstance(message, dict):
                continue  # edits, callbacks, member changes: nothing for an agent
            chat = dig(message, "chat", "id")
            if not isinstance(chat, int):
                continue
            sender = dig(message, "from", default={}) or {}
            name = " ".join(str(sender.get(k)) for k in ("first_name", "last_name") if sender.get(k)) or None
            text = dig(message, "text") or dig(message, "caption") or ""
            out.append(Inbound(external_id=str(update_id), sender_id=str(chat), text=str(text),
                               sender_name=name, files=self._files(settings, message)))
        return out

    def _files(self, settings, message) -> list[InboundFile]:
        wanted = []
        document = dig(message, "document")
        if isinstance(document, dict) and isinstance(document.get("file_id"), str):
            wanted.append((document["file_id"], str(document.get("file_name") or "document"),
                           str(document.get("mime_type") or "application/octet-stream"), document.get("file_size")))
        photos = dig(message, "photo")
        if isinstance(photos, list) and photos and isinstance(dig(photos, -1, "file_id"), str):
            wanted.append((photos[-1]["file_id"], "photo.jpg", "image/jpeg", photos[-1].get("file_size")))
        return [http.inbound_file(_SAFE_NAME.sub("_", name)[:200], content_type[:100],
                                  lambda most, file_id=file_id: self._download(settings, file_id, most),
                                  service_max=MAX_FILE, service_limit=TOO_LARGE, size=size)
                for file_id, name, content_type, size in wanted]

    def _download(self, settings, file_id, max_bytes) -> bytes:
        path = dig(self._call(settings, "getFile", json={"file_id": file_id}), "result", "file_path")
        if not isinstance(path, str):
            raise PermanentFailure("getFile gave no file_path.")
        url = f"{http.base_url(settings, DEFAULT_API)}/file/bot{settings['bot_token']}/{path}"
        return http.download(url, timeout=settings["timeout"], max_bytes=max_bytes, too_large=TOO_LARGE)

    def poll(self, settings, state):
        if settings.get("receive") != "polling":
            return [], state
        offset = int(state.get("offset") or 0)
        wait = int(settings["poll_wait"])
        body = self._call(settings, "getUpdates", json={"offset": offset, "timeout": wait,
                                                        "allowed_updates": ["message"]},
                          timeout=wait + settings["timeout"])
        updates = [u for u in (body.get("result") or []) if isinstance(u, dict)]
        ids = [u["update_id"] for u in updates if isinstance(u.get("update_id"), int)]
        if ids:
            state = dict(state, offset=max(ids) + 1)
        return self._items(updates, settings), state

    # -- outbound ----------------------------------------------------------------------

    def send(self, settings, out: Outbound) -> Sent:
        if not out.recipient_id:
            raise PermanentFailure("No Telegram chat is known for this contact.")
        if out.files:
            body = self._send_files(settings, out)
        else:
            body = self._call(settings, "sendMessage", json={"chat_id": out.recipient_id, "text": out.text})
        ident = dig(body, "result", "message_id")
        return Sent(external_id=str(ident) if ident is not None else None)

    def _send_files(self, settings, out: Outbound) -> dict:
        """The text as the caption of the files, in one upload: sendDocument for one file,
        sendMediaGroup for several. One call, so a retry can never deliver the text twice."""
        if len(out.text) > CAPTION_MAX:
            raise PermanentFailure(f"Telegram carries at most {CAPTION_MAX} characters of text with files (its "
                                   "caption limit): send the text as a reply of its own, then the files.")
        if len(out.files) == 1:
            f = out.files[0]
            return self._call(settings, "sendDocument", data={"chat_id": out.recipient_id, "caption": out.text},
                              files={"document": (f.filename, f.data, f.content_type)})
        media = [{"type": "document", "media": f"attach://file{i}", **({"caption": out.text} if i == 0 else {})}
                 for i in range(len(out.files))]
        body = self._call(settings, "sendMediaGroup", data={"chat_id": out.recipient_id, "media": json.dumps(media)},
                          files={f"file{i}": (f.filename, f.data, f.content_type) for i, f in enumerate(out.files)})
        first = body.get("result")
        return {"result": first[0] if isinstance(first, list) and first else {}}

    def test_connection(self, settings) -> str:
        me = self._call(settings, "getMe")
        return f"Connected as @{dig(me, 'result', 'username', default='?')}."
