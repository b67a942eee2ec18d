"""The embedded server under many slow clients: its limits come from config.yml and keep
answering everyone else (waitress's own default let 101 idle sockets lock all out)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from appliance.core.config import DEFAULTS
from tests.helpers import make_instance, stop_process_group
from tests.pg import free_port, wait_port

SLOW_CLIENTS = 150


@pytest.fixture
def serve(tmp_path):
    """Start ``appliance serve`` on an instance with extra config lines; yields the base URL."""
    procs = []

    def start(extra: str = ""):
        instance = make_instance(tmp_path / "inst", "sqlite:///appliance.db")
        if extra:
            with instance.config_path.open("a") as cfg:
                cfg.write(extra)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--home", str(instance.home), "serve", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        procs.append(proc)
        assert wait_port(port, timeout=30)
        return port

    yield start
    for proc in procs:
        stop_process_group(proc)


class Probe(threading.Thread):
    """GET /health every 0.2 s with a 2 s budget; records each answer's time (None: no answer)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/health"
        self.times: list[float | None] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                ok = requests.get(self.url, timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            self.times.append(time.monotonic() - started if ok else None)
            self.stop.wait(0.2)

    def finish(self):
        self.stop.set()
        self.join(timeout=10)
        return self.times


def _open(port, count):
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(sock)
    return socks


def test_150_slow_clients_do_not_lock_out_a_health_probe(serve):
    port = serve()
    clients = _open(port, SLOW_CLIENTS)
    probe = Probe(port)
    try:
        for sock in clients:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
        probe.start()
        for _ in range(12):  # a byte of the header each 0.3 s: a slowloris, never idle long enough to be dropped
            for sock in clients:
                sock.sendall(b"z")
            time.sleep(0.3)
        times = probe.finish()
        for sock in clients:  # every slow client was held open all along, and is answered
            sock.sendall(b"\r\nConnection: close\r\n\r\n")
        answered = sum(sock.recv(64).startswith(b"HTTP/1.1 200") for sock in clients)
    finally:
        for sock in clients:
            sock.close()
    assert len(times) >= 10 and None not in times, times
    assert max(times) < 1.0, f"slowest probe answer {max(times):.2f} s"
    assert answered == SLOW_CLIENTS
    print(f"{len(times)} probes, slowest {max(times) * 1000:.0f} ms, {answered} slow clients answered")


def test_the_limits_come_from_config_and_idle_sockets_are_dropped_after_the_channel_timeout(serve):
    # waitress's old default: 100 connections. Idle sockets fill it, and only the
    # channel timeout (2 s here, 75 s by default) frees it again.
    port = serve("server_connection_limit: 100\nserver_channel_timeout_seconds: 2\n")
    idle = _open(port, 101)
    try:
        time.sleep(0.5)  # waitress accepts them all, then stops accepting
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
        started = time.monotonic()
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() - started < 10, "idle connections were not dropped"
        assert idle[0].recv(1) == b""  # closed by the server
    finally:
        for sock in idle:
            sock.close()


ROOT = Path(__file__).resolve().parent.parent


def _seconds(value) -> float:
    text = str(value).strip()
    return float(text[:-1]) * {"s": 1, "m": 60}[text[-1]] if text[-1] in "sm" else float(text)


def test_timeouts_line_up_from_nginx_to_the_app():
    """Each hop closes idle connections before the next one would, and waits longer than it."""
    nginx = yaml.safe_load((ROOT / "roles/nginx/defaults/main.yml").read_text())
    app = yaml.safe_load((ROOT / "roles/appliance/defaults/main.yml").read_text())
    idle = _seconds(nginx["nginx_upstream_keepalive_timeout"])
    assert idle < app["appliance_web_keepalive"]  # gunicorn keeps what nginx may still reuse
    assert idle < DEFAULTS["server_channel_timeout_seconds"]  # likewise waitress, if proxied
    read = _seconds(nginx["nginx_proxy_read_timeout"])
    assert read > DEFAULTS["live_stream_seconds"]
    for profile in ROOT.glob("sizing/*.yml"):
        sizing = yaml.safe_load(profile.read_text())
        assert read > sizing["web"]["timeout_seconds"], profile.name
    site = (ROOT / "roles/nginx/templates/etc/nginx/sites-available/appliance.conf.j2").read_text()
    unit = (ROOT / "roles/appliance/templates/etc/systemd/system/appliance-web.service.j2").read_text()
    assert "keepalive_timeout {{ nginx_upstream_keepalive_timeout }};" in site
    assert "proxy_read_timeout {{ nginx_proxy_read_timeout }};" in site
    assert "--keep-alive {{ appliance_web_keepalive }}" in unit and "--timeout {{ appliance_web_timeout }}" in unit


@pytest.mark.parametrize(("hard", "expected"), [(600, "504 600"), (5000, "1000 1096")])
def test_the_connection_limit_fits_the_open_files_limit(hard, expected):
    """Raised to fit where the hard limit allows; lowered, saying so, where it does not."""
    code = ("import resource; from appliance.cli.server import fit_open_files; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, (600, {hard})); "
            "print(fit_open_files(1000, 8), resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[-2] == expected, done.stdout + done.stderr
    assert ("serving at most 504 connections" in done.stderr) == (hard == 600), done.stderr
