"""Key rotation as an operator meets it: under load across two real server processes, and
killed with SIGKILL at every step of ``keys rotate-master``, then healed by the next command
or start with no data lost."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from appliance.cli import main
from appliance.core.config import write_config
from appliance.web.channels.webhook import signed_headers
from appliance.web.crypto.master import key_file_path, master_key_id, parse_key_text
from appliance.web.crypto.master_rotation import CRASH_ENV, STEPS, pending_path, rotation_lock
from tests.helpers import build_world, login, make_instance, running_app
from tests.pg import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop(CRASH_ENV, None)
    env.update(extra)
    return env


def _appliance(home, *args, **env):
    return subprocess.run([sys.executable, "-m", "appliance", "--home", str(home), *args],
                          env=_env(**env), capture_output=True, text=True, timeout=120)


def _configure(instance, **settings):
    current = yaml.safe_load(instance.config_path.read_text())
    write_config(instance.home, {**current, **settings})


def _world(instance, clock):
    # The servers run as real processes on the wall clock: the seeded rows share it.
    clock.set(dt.datetime.now(dt.UTC))
    with running_app(instance) as app, app.app_context():
        return build_world()


class Server:
    """``appliance serve`` on a loopback port (or, with ``args``, another long-running command)."""

    def __init__(self, home, log_path, *args):
        self.port = free_port()
        self.log_path = log_path
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        command = args or ("serve", "--port", str(self.port))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "--home", str(home), *command],
            env=_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.log.close()

    def output(self) -> str:
        return Path(self.log_path).read_text()


def _request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()[:300]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()[:300]


class Callbacks(ThreadingHTTPServer):
    """The webhook gateway's callback URL: records the reply bodies the worker delivers."""

    def __init__(self):
        self.bodies = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(raw)["body"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _reply_channel(instance, world, url):
    """Tenant B's webhook channel that delivers replies to ``url``, and a conversation on it."""
    from appliance.web.channels import config as channel_config
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import conversations

    with running_app(instance) as app, app.app_context():
        tenant = world.tenants["B"]
        channel = Channel.create(tenant=tenant, kind="webhook", name="replies B")
        channel_config.update_settings(channel, {"callback_url": url, "rate_per_minute": "100000"})
        return conversations.start_conversation(channel, tenant, world.objects["B"]["contact"], "reply here").id


def test_rotation_under_load_across_two_servers_and_a_worker(tmp_path, db_url, clock):
    instance = make_instance(tmp_path / "home", db_url)
    # A short active-key cache keeps rotate-tenant's settle wait short; the webhook
    # throttle is set out of the way of the load generator (one address).
    _configure(instance, crypto_key_cache_seconds=0.5,
               throttle={"webhook_requests_per_address": 1_000_000})
    world = _world(instance, clock)
    callbacks = Callbacks()
    threading.Thread(target=callbacks.serve_forever, daemon=True).start()
    reply_to = _reply_channel(instance, world, f"http://127.0.0.1:{callbacks.server_port}/cb")
    hooks = {k: world.objects[k]["shared_channel"] for k in world.tenants}
    reads = {k: (world.objects[k]["conversation"].id, world.headers(k, "agent")) for k in world.tenants}
    servers = [Server(instance.home, tmp_path / f"server{i}.log") for i in range(2)]
    # The worker decrypts every reply it delivers: replies written after rotate-tenant
    # are under a data key it has to unwrap with the new master key.
    worker = Server(instance.home, tmp_path / "worker.log", "worker", "--interval", "0.3")
    results, replies, lock = [], [], threading.Lock()
    phase = {"name": "before", "tenants": ["P", "A", "B"]}
    stop = threading.Event()

    def load(worker: int):
        n = 0
        while not stop.is_set():
            n += 1
            server = servers[(worker + n) % 2]
            tenants = phase["tenants"]
            key = tenants[(worker + n) % len(tenants)]
            if worker == 0 and n % 3 == 0:
                body = f"reply {n}"
                answer = _request(f"{server.url}/api/v1/conversations/{reply_to}/messages",
                                  json.dumps({"body": body, "direction": "out"}).encode(),
                                  {"Content-Type": "application/json", **world.headers("B", "agent")})
                if answer[0] == 201:
                    replies.append((phase["name"], body))
            elif n % 2:
                raw = json.dumps({"id": uuid.uuid4().hex, "phone": f"+49 170 {worker}{n:06d}",
                                  "body": f"load {worker}-{n}"}).encode()
                headers = {"Content-Type": "application/json",
                           **signed_headers(hooks[key].secret, raw, now=int(time.time()))}
                answer = _request(f"{server.url}/hooks/{hooks[key].public_key}", raw, headers)
            else:
                conversation_id, auth = reads[key]
                answer = _request(f"{server.url}/api/v1/conversations/{conversation_id}/messages", None, auth)
            with lock:
                results.append((phase["name"], server.port, key, *answer))

    try:
        for server in servers:
            assert wait_port(server.port, timeout=60), server.output()
        with ThreadPoolExecutor(4) as pool:
            workers = [pool.submit(load, i) for i in range(4)]
            time.sleep(1.0)
            phase["name"] = "rotate-master"
            master = _appliance(instance.home, "keys", "rotate-master", "--yes")
            assert master.returncode == 0, master.stdout + master.stderr
            # Tenants whose data keys no server has unwrapped yet: they need the new master key.
            phase.update(name="rotate-tenant", tenants=["P", "A", "B", "A1", "A2", "B1"])
            tenant = _appliance(instance.home, "keys", "rotate-tenant", "--all")
            assert tenant.returncode == 0, tenant.stdout + tenant.stderr
            phase["name"] = "after"
            time.sleep(1.5)  # past the active-key cache: every server writes with the new keys
            stop.set()
            for w in workers:
                w.result()
        deadline = time.monotonic() + 30
        while not {b for _, b in replies} <= set(callbacks.bodies) and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker's rounds run on its own schedule
        outputs = [s.output() for s in servers]
    finally:
        stop.set()
        for process in (*servers, worker):
            process.stop()
        callbacks.shutdown()
    failed = [r for r in results if not 200 <= r[3] < 300]
    assert not failed, failed[:5]
    counts = {}
    for name in ("before", "rotate-master", "rotate-tenant", "after"):
        ports = {r[1] for r in results if r[0] == name}
        assert ports == {s.port for s in servers}, f"no load on both servers during {name}"
        counts[name] = sum(1 for r in results if r[0] == name)
    assert min(counts.values()) >= 10, counts
    sent_after = [body for name, body in replies if name == "after"]
    assert sent_after and {body for _, body in replies} <= set(callbacks.bodies), worker.output()
    assert "following a master key rotation" in worker.output(), worker.output()
    assert not re.search(r"job \w+ failed|Traceback", worker.output()), worker.output()
    assert all("following a master key rotation" in out for out in outputs), outputs
    assert "Traceback" not in "".join(outputs)
    verified = _appliance(instance.home, "keys", "verify")
    assert verified.returncode == 0 and " 0 failed" in verified.stdout, verified.stdout + verified.stderr


def _key_files(home) -> dict:
    keys = home / "keys"
    return {p.relative_to(keys).as_posix() for p in keys.rglob("*") if p.is_file() and not p.name.startswith(".")}


def _database_key_id(instance) -> str:
    from appliance.web.crypto.tables import CryptoMaster
    from appliance.web.db import bind

    with bind(instance.database_url).connection_context():
        return CryptoMaster.select().order_by(CryptoMaster.id).first().master_key_id


def _file_key_id(path) -> str:
    return master_key_id(parse_key_text(path.read_text(), str(path)))


def test_kill_at_every_rotate_master_step_then_the_next_command_heals(tmp_path, db_url, clock, runner):
    instance = make_instance(tmp_path / "home", db_url)
    world = _world(instance, clock)
    home = ["--home", str(instance.home)]
    key_path = key_file_path(instance)
    for step in STEPS:
        before = _database_key_id(instance)
        crashed = _appliance(instance.home, "keys", "rotate-master", "--yes", **{CRASH_ENV: step})
        assert crashed.returncode == -signal.SIGKILL, (step, crashed.stdout, crashed.stderr)
        committed = _database_key_id(instance) != before
        assert committed == (STEPS.index(step) >= STEPS.index("committed")), step
        if step == "old-key-retired":
            assert not key_path.exists() and pending_path(key_path).exists()  # the worst state

        if step == "old-key-retired":
            # What a deploy runs next (the Ansible role runs init every time): it must not
            # make a fresh key where the rotation's new one waits.
            init = runner.invoke(main, [*home, "init", "--admin-email", "a@example.test"])
            assert init.exit_code == 0 and "already initialised" in init.output, init.output
            assert key_path.exists() and not pending_path(key_path).exists()
        status = runner.invoke(main, [*home, "keys", "status"])
        assert status.exit_code == 0, (step, status.output)
        if committed and step not in ("new-key-promoted", "old-key-retired"):
            assert "finished a master key rotation" in status.output, (step, status.output)
        if not committed:
            assert "master.key.new holds a master key the database does not use" in status.output, status.output
        assert _file_key_id(key_path) == _database_key_id(instance), step
        assert not committed or not pending_path(key_path).exists(), step
        verify = runner.invoke(main, [*home, "keys", "verify"])
        assert verify.exit_code == 0 and " 0 failed" in verify.output, (step, verify.output)

    retired = {f for f in _key_files(instance.home) if f.startswith("retired/")}
    assert len(retired) == 3  # one per rotation that got past its commit
    with running_app(instance) as app, app.app_context():
        from appliance.web.models.contact_center import Message

        bodies = {m.body for m in Message.select()}
    assert {f"hello from {k}" for k in world.tenants} <= bodies


def test_a_start_finishes_a_rotation_killed_between_moving_the_old_key_and_renaming_the_new(tmp_path, clock):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    world = _world(instance, clock)
    crashed = _appliance(instance.home, "keys", "rotate-master", "--yes", **{CRASH_ENV: "old-key-retired"})
    assert crashed.returncode == -signal.SIGKILL
    key_path = key_file_path(instance)
    assert not key_path.exists()
    server = Server(instance.home, tmp_path / "server.log")
    try:
        assert wait_port(server.port, timeout=60), server.output()
        conversation_id = world.objects["A"]["conversation"].id
        status, _, body = _request(f"{server.url}/api/v1/conversations/{conversation_id}/messages",
                                   None, world.headers("A", "agent"))
        assert status == 200 and b"hello from A" in body, body
    finally:
        server.stop()
    assert "finished a master key rotation" in server.output()
    assert key_path.exists() and not pending_path(key_path).exists()
    assert _file_key_id(key_path) == _database_key_id(instance)


def test_a_missing_key_file_names_the_file_that_holds_the_key(tmp_path, runner):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    with running_app(instance):
        pass  # the first start records the key's id in the database
    key_path = key_file_path(instance)
    moved = key_path.parent / "retired" / f"master-{_file_key_id(key_path)}.key"
    moved.parent.mkdir()
    key_path.rename(moved)
    answer = runner.invoke(main, ["--home", str(instance.home), "keys", "status"])
    assert answer.exit_code != 0
    assert f"mv {moved} {key_path}" in answer.output, answer.output


def test_a_second_rotation_on_the_host_is_refused_while_one_runs(tmp_path, runner):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    key_path = key_file_path(instance)
    before = key_path.read_bytes()
    with rotation_lock(key_path.parent) as mine:
        assert mine
        answer = runner.invoke(main, ["--home", str(instance.home), "keys", "rotate-master", "--yes"])
    assert answer.exit_code != 0 and "Another 'appliance keys rotate-master' is running" in answer.output
    assert key_path.read_bytes() == before


def test_a_prepared_key_is_kept_until_the_rotation_uses_it(tmp_path, runner):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    home = ["--home", str(instance.home)]
    key_path = key_file_path(instance)
    prepared = runner.invoke(main, [*home, "keys", "rotate-master", "--prepare"])
    assert prepared.exit_code == 0 and "--prepared" in prepared.output, prepared.output
    new_id = _file_key_id(pending_path(key_path))
    again = runner.invoke(main, [*home, "keys", "rotate-master", "--prepare"])
    assert again.exit_code == 0 and _file_key_id(pending_path(key_path)) == new_id  # kept, not replaced
    assert _database_key_id(instance) != new_id
    rotated = runner.invoke(main, [*home, "keys", "rotate-master", "--yes", "--prepared"])
    assert rotated.exit_code == 0, rotated.output
    assert _file_key_id(key_path) == new_id == _database_key_id(instance)


def test_a_host_without_the_new_key_answers_webhooks_with_a_json_503(app, client, world, instance):
    from appliance.web.crypto import open_keyring
    from appliance.web.crypto.master_rotation import rotate_master

    serving = app.extensions["crypto"]
    rotate_master(instance, keyring=open_keyring(instance, install=False))
    # This host never got the new key file, and its process has not cached tenant A's keys.
    key_path = key_file_path(instance)
    key_path.unlink()
    for retired in (key_path.parent / "retired").iterdir():
        retired.unlink()
    serving.forget([k for k, v in list(serving._by_id.items()) if v.tenant_id == world.tenants["A"].id])
    channel = world.objects["A"]["shared_channel"]
    raw = json.dumps({"phone": "+49 170 5559999", "body": "during the rotation"}).encode()
    answer = client.post(f"/hooks/{channel.public_key}", data=raw,
                         headers={"Content-Type": "application/json", **signed_headers(channel.secret, raw)})
    assert answer.status_code == 503 and answer.is_json, answer.get_data(as_text=True)[:200]
    assert answer.headers["Retry-After"] and "Encryption keys" in answer.get_json()["message"]
    conversation_id = world.objects["A"]["conversation"].id
    api = client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=world.headers("A", "agent"))
    assert api.status_code == 503 and api.is_json
    login(client, world.email("A", "agent"))
    page = client.get(f"/t/{world.tenants['A'].id}/conversations/{conversation_id}")
    assert page.status_code == 503 and "Encryption keys are unavailable" in page.get_data(as_text=True)
    from appliance.web.system_status import collect

    with app.app_context():
        keys = {c.name: c for c in collect(instance, app.extensions["database"])}["Encryption keys"]
    assert keys.level == "error" and "copy the new key file" in keys.detail, keys


def test_a_second_host_without_the_new_key_is_told_where_it_comes_from(tmp_path, runner):
    instance = make_instance(tmp_path / "home", "sqlite:///appliance.db")
    key_path = key_file_path(instance)
    old = key_path.read_bytes()
    assert runner.invoke(main, ["--home", str(instance.home), "keys", "rotate-master", "--yes"]).exit_code == 0
    key_path.write_bytes(old)  # what another app host still has
    answer = runner.invoke(main, ["--home", str(instance.home), "keys", "status"])
    assert answer.exit_code != 0
    assert "was rotated at" in answer.output and "copy the new key file" in answer.output, answer.output
