"""Loopback stand-ins for the messenger services, speaking their documented HTTP APIs.

Each double is a small threaded HTTP server on 127.0.0.1 with a random port. It answers
like the real service (shapes from /work/shared/CHANNELS.md and the services' docs),
records what it was sent, and plays faults queued by a test: ``fail("429", retry_after=3)``,
``fail("500")``, ``fail("drop")`` (the connection is closed before any answer). Used as
context managers, they stop and free their port on exit.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _serve(self, method):
        double = self.server.double
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlparse(self.path)
        if double.latency:
            time.sleep(double.latency)  # a service's answer time, so concurrent senders overlap
        fault = double.next_fault(url.path)
        if fault is not None:
            kind, retry_after = fault
            if kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, body, headers = double.fault_answer(kind, retry_after)
        else:
            status, body, headers = double.route(method, url.path, parse_qs(url.query), self.headers, raw)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")


class ServiceDouble:
    def __init__(self):
        self.sent: list[dict] = []  # what the appliance delivered, in order
        self.latency = 0.0  # seconds each answer takes
        self.calls: list[str] = []  # every path asked, faults included
        self._faults: list[tuple[str, str, float | None]] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.double = self
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def fail(self, kind: str, *, path_contains: str = "", retry_after: float | None = None, times: int = 1):
        """Queue ``times`` faults for the next calls whose path contains ``path_contains``."""
        with self._lock:
            self._faults += [(path_contains, kind, retry_after)] * times

    def next_fault(self, path):
        with self._lock:
            self.calls.append(path)
            for i, (needle, kind, retry_after) in enumerate(self._faults):
                if needle in path:
                    del self._faults[i]
                    return kind, retry_after
        return None

    def fault_answer(self, kind, retry_after):
        if kind == "429":
            return 429, {"error": "Too Many Requests"}, {"Retry-After": str(int(retry_after or 1))}
        return int(kind), {"error": "Internal Server Error"}, {}

    def route(self, method, path, query, headers, raw):
        return 404, {"error": "not found"}, {}

    def record(self, item):
        with self._lock:
            self.sent.append(item)


class TelegramDouble(ServiceDouble):
    """Bot API: /bot<token>/<method> answering {"ok": ...}; /file/bot<token>/<path> for downloads."""

    def __init__(self, token="123456:TEST-token"):
        super().__init__()
        self.token = token
        self.updates: list[dict] = []  # what getUpdates hands out
        self.files: dict[str, bytes] = {}
        self._message_id = 100

    def fault_answer(self, kind, retry_after):
        if kind == "429":
            return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after "
                         f"{int(retry_after or 1)}", "parameters": {"retry_after": int(retry_after or 1)}}, {}
        return int(kind), {"ok": False, "error_code": int(kind), "description": "Internal Server Error"}, {}

    def route(self, method, path, query, headers, raw):
        prefix = f"/bot{self.token}/"
        if path.startswith(f"/file/bot{self.token}/"):
            data = self.files.get(path.rsplit("/", 1)[-1])
            return (200, data, {"Content-Type": "application/octet-stream"}) if data is not None else (404, {}, {})
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, {}
        name = path[len(prefix):]
        if headers.get("Content-Type", "").startswith("multipart/form-data"):
            return self._upload(name, *multipart(headers["Content-Type"], raw))
        args = json.loads(raw or b"{}")
        if name == "getMe":
            return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "username": "test_bot"}}, {}
        if name == "sendMessage":
            if not args.get("text"):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, {}
            self._message_id += 1
            self.record({"chat_id": args["chat_id"], "text": args["text"]})
            return 200, {"ok": True, "result": {"message_id": self._message_id, "chat": {"id": args["chat_id"]},
                                                "text": args["text"]}}, {}
        if name == "getUpdates":
            offset = int(args.get("offset") or 0)
            ready = [u for u in self.updates if u["update_id"] >= offset]
            if not ready and args.get("timeout"):
                time.sleep(min(float(args["timeout"]), 0.2))
            return 200, {"ok": True, "result": ready}, {}
        if name == "getFile":
            file_id = args.get("file_id")
            if file_id not in self.files:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, {}
            return 200, {"ok": True, "result": {"file_id": file_id, "file_path": f"documents/{file_id}"}}, {}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}, {}


    def _upload(self, name, fields, files):
        """sendDocument / sendMediaGroup: files uploaded as multipart/form-data."""
        if name == "sendDocument":
            items = [(fields.get("caption", ""), files["document"])]
        elif name == "sendMediaGroup":
            media = json.loads(fields["media"])
            items = [(m.get("caption", ""), files[m["media"].removeprefix("attach://")]) for m in media]
        else:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {name} takes no files"}, {}
        results = []
        for caption, (filename, content_type, data) in items:
            self._message_id += 1
            self.record({"chat_id": fields["chat_id"], "caption": caption, "filename": filename,
                         "content_type": content_type, "data": data})
            results.append({"message_id": self._message_id, "chat": {"id": fields["chat_id"]},
                            "document": {"file_name": filename}})
        return 200, {"ok": True, "result": results[0] if name == "sendDocument" else results}, {}


def multipart(content_type: str, raw: bytes) -> tuple[dict, dict]:
    """A multipart/form-data body's text fields and its files as (filename, content type, bytes)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            files[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        else:
            fields[name] = part.get_payload(decode=True).decode()
    return fields, files


class WhatsAppDouble(ServiceDouble):
    """Cloud API: POST /<phone_number_id>/messages with a bearer token."""

    def __init__(self, phone_number_id="106540352242922", token="EAAG-test"):
        super().__init__()
        self.phone_number_id, self.token = phone_number_id, token
        self.media: dict[str, tuple] = {}  # uploaded by POST /<id>/media: (filename, content type, bytes)
        self._n = 0

    def fault_answer(self, kind, retry_after):
        if kind == "429":
            return 429, {"error": {"message": "(#130429) Rate limit hit", "code": 130429}}, {
                "Retry-After": str(int(retry_after or 1))}
        return int(kind), {"error": {"message": "Service temporarily unavailable", "code": 2}}, {}

    def route(self, method, path, query, headers, raw):
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": {"message": "Invalid OAuth access token.", "code": 190}}, {}
        if path == f"/{self.phone_number_id}" and method == "GET":
            return 200, {"id": self.phone_number_id, "display_phone_number": "15550783881"}, {}
        if path.startswith("/files/") and method == "GET":  # the short-lived media URLs
            found = self.media.get(path.removeprefix("/files/"))
            return (200, found[2], {"Content-Type": found[1]}) if found else (404, {}, {})
        if path.removeprefix("/") in self.media and method == "GET":
            _name, content_type, data = self.media[path.removeprefix("/")]
            return 200, {"messaging_product": "whatsapp", "url": f"{self.url}/files/{path.removeprefix('/')}",
                         "mime_type": content_type, "file_size": len(data), "id": path.removeprefix("/")}, {}
        if path == f"/{self.phone_number_id}/media" and method == "POST":
            fields, files = multipart(headers["Content-Type"], raw)
            if fields.get("messaging_product") != "whatsapp" or "file" not in files:
                return 400, {"error": {"message": "(#100) Param file is required", "code": 100}}, {}
            self._n += 1
            self.media[f"media{self._n}"] = files["file"]
            return 200, {"id": f"media{self._n}"}, {}
        if path == f"/{self.phone_number_id}/messages" and method == "POST":
            body = json.loads(raw or b"{}")
            self._n += 1
            wamid = f"wamid.out{self._n}"
            if body.get("type") == "document":
                document = body["document"]
                if document.get("id") not in self.media:
                    return 400, {"error": {"message": "(#131053) Media upload error", "code": 131053}}, {}
                self.record({"to": body.get("to"), "caption": document.get("caption"), "id": wamid,
                             "filename": document.get("filename"), "file": self.media[document["id"]]})
            else:
                self.record({"to": body.get("to"), "text": (body.get("text") or {}).get("body"), "id": wamid})
            return 200, {"messaging_product": "whatsapp", "contacts": [{"input": body.get("to"),
                                                                        "wa_id": body.get("to")}],
                         "messages": [{"id": wamid}]}, {}
        return 404, {"error": {"message": "Unknown path", "code": 100}}, {}


class VkDouble(ServiceDouble):
    """VK API: POST /method/<name> (form fields), always HTTP 200 with response or error;
    Bots Long Poll at /lp; /files/<name> serves what inbound attachments point at; the doc
    upload servers that docs.getMessagesUploadServer hands out at /upload/<n>."""

    def __init__(self, token="vk1.a.test", group_id="1"):
        super().__init__()
        self.token, self.group_id = token, group_id
        self.events: list[dict] = []  # what the long-poll server hands out, by position = ts
        self.files: dict[str, bytes] = {}  # served at /files/<name>
        self.uploads: dict[str, tuple] = {}  # upload server answers ("file" strings): (filename, type, bytes)
        self.docs: dict[str, tuple] = {}  # saved docs by "doc<owner_id>_<id>"
        self._upload_servers: dict[str, str] = {}  # /upload/<n> -> the peer_id it was asked for
        self._seen_random: dict[int, int] = {}
        self._n = 0

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def fault_answer(self, kind, retry_after):
        if kind == "429":  # VK's way: HTTP 200, error 6
            return 200, {"error": {"error_code": 6, "error_msg": "Too many requests per second"}}, {}
        return int(kind), b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"}

    def route(self, method, path, query, headers, raw):
        if path == "/lp":
            ts = int((query.get("ts") or ["0"])[0])
            if (query.get("key") or [""])[0] != "lpkey":
                return 200, {"failed": 2}, {}
            return 200, {"ts": str(len(self.events)), "updates": self.events[ts:]}, {}
        if path.startswith("/files/"):
            data = self.files.get(path[len("/files/"):])
            return (200, data, {"Content-Type": "application/octet-stream"}) if data is not None else (404, {}, {})
        if path in self._upload_servers and method == "POST":
            return self._take_upload(path, headers, raw)
        if not path.startswith("/method/"):
            return 404, b"not found", {"Content-Type": "text/plain"}
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if form.get("access_token") != self.token:
            return 200, {"error": {"error_code": 5, "error_msg": "User authorization failed"}}, {}
        name = path[len("/method/"):]
        if name == "groups.getById":
            return 200, {"response": {"groups": [{"id": int(self.group_id), "name": "Test"}]}}, {}
        if name == "groups.getLongPollServer":
            return 200, {"response": {"server": self.url + "/lp", "key": "lpkey", "ts": "0"}}, {}
        if name == "docs.getMessagesUploadServer":
            if form.get("type") != "doc" or not form.get("peer_id"):
                return _vk_error(100, "One of the parameters specified was missing or invalid: peer_id")
            self._n += 1
            self._upload_servers[f"/upload/{self._n}"] = form["peer_id"]
            return 200, {"response": {"upload_url": f"{self.url}/upload/{self._n}"}}, {}
        if name == "docs.save":
            found = self.uploads.pop(form.get("file", ""), None)  # an upload's answer is good for one save
            if found is None:
                return _vk_error(100, "One of the parameters specified was missing or invalid: file")
            self._n += 1
            key = f"doc-{self.group_id}_{self._n}"
            self.docs[key] = found
            return 200, {"response": {"type": "doc", "doc": {
                "id": self._n, "owner_id": -int(self.group_id), "title": form.get("title") or found[0],
                "size": len(found[2]), "ext": found[0].rpartition(".")[2], "url": f"{self.url}/files/{key}",
                "date": 1735689600, "type": 8}}}, {}
        if name == "messages.send":
            random_id = int(form.get("random_id") or 0)
            if random_id and random_id in self._seen_random:  # VK's idempotency: the same message id again
                return 200, {"response": self._seen_random[random_id]}, {}
            attached = [a for a in (form.get("attachment") or "").split(",") if a]
            if any(a not in self.docs for a in attached):
                return _vk_error(100, "One of the parameters specified was missing or invalid: attachment")
            self._n += 1
            self._seen_random[random_id] = self._n
            item = {"peer_id": form.get("peer_id"), "text": form.get("message"), "random_id": random_id}
            if attached:
                item["files"] = [self.docs[a] for a in attached]
            self.record(item)
            return 200, {"response": self._n}, {}
        return 200, {"error": {"error_code": 3, "error_msg": "Unknown method passed"}}, {}

    def _take_upload(self, path, headers, raw):
        """A doc upload server: the multipart field ``file`` in, an opaque ``file`` string out."""
        _fields, files = multipart(headers.get("Content-Type", ""), raw)
        if "file" not in files:
            return 200, {"error": "no_file", "error_descr": "There is no file in the request"}, {}
        self._n += 1
        answer = f"{self._upload_servers[path]}|{self._n}|{len(self.uploads)}"
        self.uploads[answer] = files["file"]
        return 200, {"file": answer}, {}


def _vk_error(code: int, message: str) -> tuple[int, dict, dict]:
    return 200, {"error": {"error_code": code, "error_msg": message}}, {}


class CallbackDouble(ServiceDouble):
    """A generic webhook's callback receiver: records the signed deliveries."""

    def route(self, method, path, query, headers, raw):
        self.record({"headers": dict(headers), "raw": raw})
        return 200, {"ok": True}, {}


class ViberDouble(ServiceDouble):
    """REST bot API: POST /pa/<method> with X-Viber-Auth-Token, always HTTP 200 with a ``status``
    (0 ok, 2 invalidAuthToken, 3 badData, 6 receiverNotSubscribed, 12 tooManyRequests); /media/<name>
    serves the files that inbound messages point at."""

    def __init__(self, token="4453b6ac12345678-e02c5f12174805f9-daec9cbb5448c51f"):
        super().__init__()
        self.token = token
        self.webhooks: list[dict] = []  # set_webhook calls
        self.media: dict[str, bytes] = {}
        self.subscribers: set[str] = set()  # empty: everyone may be messaged
        self._token = 5741311803571721087

    def fault_answer(self, kind, retry_after):
        if kind == "429":  # Viber's way: HTTP 200, status 12
            return 200, {"status": 12, "status_message": "tooManyRequests"}, {}
        return int(kind), b"<html>Service Unavailable</html>", {"Content-Type": "text/html"}

    def route(self, method, path, query, headers, raw):
        if path.startswith("/media/"):
            data = self.media.get(path[len("/media/"):])
            return (200, data, {"Content-Type": "application/octet-stream"}) if data is not None else (404, {}, {})
        if not path.startswith("/pa/"):
            return 404, b"not found", {"Content-Type": "text/plain"}
        if headers.get("X-Viber-Auth-Token") != self.token:
            return 200, {"status": 2, "status_message": "invalidAuthToken"}, {}
        name, body = path[len("/pa/"):], json.loads(raw or b"{}")
        if name == "get_account_info":
            return 200, {"status": 0, "status_message": "ok", "id": "pa:75346594275468546724",
                         "name": "Bank Support", "uri": "banksupport", "members": []}, {}
        if name == "set_webhook":
            self.webhooks.append(body)
            return 200, {"status": 0, "status_message": "ok", "event_types": body.get("event_types") or []}, {}
        if name == "send_message":
            if not body.get("receiver") or not (body.get("sender") or {}).get("name") or not body.get("text"):
                return 200, {"status": 3, "status_message": "badData"}, {}
            if self.subscribers and body["receiver"] not in self.subscribers:
                return 200, {"status": 6, "status_message": "receiverNotSubscribed"}, {}
            self._token += 1
            self.record({"receiver": body["receiver"], "text": body["text"], "sender": body["sender"]["name"],
                         "message_token": self._token})
            return 200, {"status": 0, "status_message": "ok", "message_token": self._token,
                         "chat_hostname": "SN-CHAT-05_"}, {}
        return 200, {"status": 1, "status_message": "invalidUrl"}, {}
