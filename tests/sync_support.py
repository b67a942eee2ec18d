"""Test helpers for sync: a real receiver on loopback with fault injection, and a bare
listener that records connections. (Time is the ``clock`` fixture's, as in every test.)"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Seen:
    path: str
    key: str | None
    body: bytes
    status: int = 0


class FaultyFront:
    """WSGI middleware: records every request, and plays queued faults in order.

    Faults: ``"500"`` answers 500 without storing; ``"lost"`` lets the receiver
    store the batch, then answers 502 as if the answer was lost on the way;
    ``("slow", seconds)`` waits before handing the request on, so the client
    times out while the receiver still stores it.
    """

    def __init__(self, app):
        self.app = app
        self.faults: list = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        record = Seen(environ.get("PATH_INFO", ""), environ.get("HTTP_IDEMPOTENCY_KEY"), body)
        with self.lock:
            self.seen.append(record)
            fault = self.faults.pop(0) if self.faults and record.path == "/api/v1/reports" else None
        if fault == "500":
            record.status = 500
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"injected failure"]
        if isinstance(fault, tuple) and fault[0] == "slow":
            time.sleep(fault[1])
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = b"".join(self.app(environ, capture))
        record.status = int(captured["status"].split()[0])
        if fault == "lost":
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"answer lost"]
        start_response(captured["status"], captured["headers"])
        return [result]

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "/api/v1/reports"]


class Receiver:
    """The vendor's receiver app in a thread (werkzeug server on 127.0.0.1, free port)."""

    def __init__(self, db_path: Path, admin_token: str | None = None, port: int = 0):
        from appliance.vendor_tools.receiver.app import create_app

        self.app = create_app(db_path, admin_token=admin_token)
        self.db = self.app.extensions["vendor_sync_db"]
        self.front = FaultyFront(self.app)
        self.server = make_server("127.0.0.1", port, self.front, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def register(self, identity, label=None):
        from appliance.vendor_tools.receiver.service import register_installation

        with self.db.connection_context():
            register_installation(identity.installation_id, identity.public_key_pem(), label)

    def query(self, fn):
        with self.db.connection_context():
            return fn()


class Listener:
    """A bare TCP listener that records every connection attempt (and closes it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def settle(self):
        time.sleep(0.3)  # let the accept loop see anything still in the backlog
        return self.connections

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


SLOW_RECEIVER = r"""
import sys, time
from appliance.vendor_tools.receiver import service

original = service._store
count = {"n": 0}

def slow_store(envelope, source):
    result = original(envelope, source)
    count["n"] += 1
    if count["n"] == 1:
        print("STORED-FIRST-OF-BATCH", flush=True)
        time.sleep(60)  # killed here, mid-batch, inside the open transaction
    return result

service._store = slow_store
from appliance.cli import main
main(sys.argv[1:], prog_name="appliance")
"""


@dataclass
class ReceiverProcess:
    """``appliance vendor serve-sync`` as a real process (optionally slowed to die mid-batch)."""

    db_path: Path
    port: int
    slow: bool = False
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        args = ["vendor", "serve-sync", "--db", str(self.db_path), "--port", str(self.port)]
        plain = "import sys; from appliance.cli import main; main(sys.argv[1:], prog_name='appliance')"
        code = SLOW_RECEIVER if self.slow else plain
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"receiver exited: {self.proc.stdout.read()}") from None
                time.sleep(0.05)
        raise RuntimeError("receiver did not start")

    def wait_for(self, marker: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if marker in line:
                return
        raise AssertionError(f"receiver never printed {marker}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
