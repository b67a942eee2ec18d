"""Live updates across processes: two gunicorn servers (two "app hosts", each with several
gthread workers, started as the systemd unit starts them) on one database. A widget's
stream opened on one host hears a reply that the API received on the other."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.pg import free_port

GUNICORN = Path(sys.executable).with_name("gunicorn")
pytestmark = pytest.mark.skipif(not GUNICORN.exists(), reason="gunicorn is not installed in this virtualenv")


def _serve(home: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, APPLIANCE_HOME=str(home), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen(
        [str(GUNICORN), "--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "2",
         "--threads", "4", "--timeout", "30", "appliance.web:create_app()"],
        env=env, cwd=str(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_healthy(port: int, proc: subprocess.Popen, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer /health in time")


def _stop(proc: subprocess.Popen):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _read_frames(port: int, path: str, out: queue.Queue, stop: threading.Event):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    out.put(("status", resp.status, resp.getheader("X-Accel-Buffering")))
    block = []
    while not stop.is_set():
        try:
            line = resp.fp.readline()
        except OSError:  # the test ended and the servers stopped, or a ping was late
            break
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line:
            block.append(line)
            continue
        fields = dict(item.split(": ", 1) for item in block if not item.startswith(":") and ": " in item)
        if "data" in fields:
            out.put(("frame", json.loads(fields["data"])))
        block = []
    conn.close()


def test_a_reply_on_one_host_reaches_a_stream_on_another(app, world, instance):
    database = app.extensions["database"]
    database.close()  # the servers own the database now; the test only talks HTTP
    hosts = [free_port(), free_port()]
    procs = [_serve(instance.home, port) for port in hosts]
    stop = threading.Event()
    try:
        for port, proc in zip(hosts, procs, strict=True):
            _wait_healthy(port, proc)
        channel = world.objects["A"]["channel"]
        raw = json.dumps({"body": "hello from the site", "name": "Multi Host"}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{hosts[0]}/widget/{channel.public_key}/messages",
                                     data=raw, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            started = json.load(resp)
        frames: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_frames, daemon=True, args=(
            hosts[0], f"/widget/{channel.public_key}/events?token={started['token']}", frames, stop))
        reader.start()
        assert frames.get(timeout=10) == ("status", 200, "no")
        time.sleep(0.5)  # the stream has its cursor
        sent = []
        for n in range(4):  # each on a new connection to the other host: any of its workers
            body = json.dumps({"body": f"reply {n}", "direction": "out"}).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{hosts[1]}/api/v1/conversations/{started['conversation_id']}/messages",
                data=body, method="POST",
                headers={"Content-Type": "application/json", **world.headers("A", "agent")})
            with urllib.request.urlopen(req, timeout=10) as resp:
                sent.append(json.load(resp)["id"])
        got = []
        while len(got) < len(sent):
            kind, frame = frames.get(timeout=10)
            assert kind == "frame"
            got.append(frame["message_id"])
        assert got == sent
    finally:
        stop.set()
        for proc in procs:
            _stop(proc)
