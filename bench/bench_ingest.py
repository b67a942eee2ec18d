"""Inbound ingest through HTTP: the appliance against the ceiling of its own stack.

    python bench/bench_ingest.py            # concurrency 4/16/64, 5 repeats of 5 s
    python bench/bench_ingest.py --quick    # concurrency 16, 3 repeats of 2 s (< 60 s)

Two stacks, each started the way it runs in production:

* embedded default: ``appliance serve`` (waitress, 8 threads) on SQLite;
* minimal profile: gunicorn ``gthread``, 3 workers x 4 threads (sizing/minimal.yml) on
  PostgreSQL (a throwaway cluster, tests/pg.py).

On each stack the same server settings also serve bench/ingest_ceiling.py: a Flask app
that checks the HMAC and inserts one 200-byte row, the most any webhook endpoint on
this stack can do. Both are driven with the same load: signed webhook deliveries
(appliance.web.channels.webhook.signed_headers), 200-byte bodies, every client
connection its own senders, each sender sending two messages (the first starts a
conversation with a new contact, the second continues it). Runs of A and B are
interleaved (their order alternating) and repeated; each row prints min/median/max
messages per second and the ratio appliance/ceiling of each pair; p99 latency is
reported at concurrency 16.

The load generator is an asyncio client over raw keep-alive HTTP/1.1 connections, in
this process: one thread with N connections costs far less CPU per request than N
client threads fighting over the GIL, and on a 2-vCPU machine every cycle the client
takes is one the server does not get (wrk is not packaged with a way to sign each
request with a fresh timestamp without Lua's missing HMAC). The client's share is the
same for A and B, which is why only the ratio within one run is meaningful.

The appliance's webhook throttle (per address, counted in the database) stays on, with
a 1-second window and a limit the load never reaches: the same count query runs over
about as many rows as the default 600-per-minute limit would scan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.web.channels.webhook import signed_headers  # noqa: E402
from tests.pg import TempPostgres, free_port, wait_port  # noqa: E402

BIN = Path(sys.executable).parent
BODY = ("Guten Tag, meine Karte wurde gestern blockiert und ich brauche bis Freitag eine neue; "
        "bitte rufen Sie mich an oder antworten Sie hier. Kundennummer folgt im naechsten Satz. Danke! "
        * 2)[:200]
assert len(BODY) == 200
GUNICORN = ["--worker-class", "gthread", "--workers", "3", "--threads", "4", "--timeout", "60",
            "--worker-tmp-dir", "/dev/shm", "--log-level", "warning"]


# -- the instances ---------------------------------------------------------------------

def prepare_appliance(home: Path, database_url: str) -> tuple[str, str]:
    """A migrated instance with one tenant, one agent and a webhook channel: (key, secret)."""
    from appliance.core.config import Instance
    from appliance.web import create_app
    from appliance.web import provisioning as setup
    from appliance.web.services import catalogue, tenants

    home.mkdir(parents=True)
    setup.ensure_config(home, {"database_url": database_url,
                               "throttle": {"webhook_window_seconds": 1, "webhook_requests_per_address": 10**6}})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    app = create_app(instance=instance)
    with app.app_context(), app.extensions["database"].connection_context():
        provider = tenants.create_provider("Provider")
        bank = tenants.create_child(provider, "Bank", "enterprise")
        tenants.invite_member(bank, email="agent@bank.test", name="Agent", password="bench-password-1", role="agent")
        channel = catalogue.create_channel(bank, kind="webhook", name="gateway")
        return channel.public_key, channel.secret


class Server:
    def __init__(self, name, argv, env, cwd, port):
        self.name, self.port = name, port
        self.log = open(Path(tempfile.gettempdir()) / f"bench-ingest-{name}-{port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=dict(os.environ, **env), cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(port, timeout=60):
            self.stop()
            raise RuntimeError(f"{name} did not start; see {self.log.name}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def start_stack(stack: str, work: Path, pg: TempPostgres | None) -> dict:
    """The appliance and the ceiling on ``stack``, started the same way: {"appliance": .., "ceiling": ..}."""
    if stack == "sqlite":
        app_url, ceiling_url = "sqlite:///appliance.db", f"sqlite:///{work / 'ceiling.db'}"
    else:
        app_url, ceiling_url = pg.url(pg.create_database()), pg.url(pg.create_database())
    home = work / f"home-{stack}"
    key, secret = prepare_appliance(home, app_url)
    sys.path.insert(0, str(ROOT / "bench"))
    from ingest_ceiling import create_schema

    create_schema(ceiling_url)
    env = {"APPLIANCE_HOME": str(home), "PYTHONPATH": str(ROOT), "CEILING_DATABASE_URL": ceiling_url,
           "CEILING_SECRET": secret}
    servers = {}
    port_a, port_b = free_port(), free_port()
    if stack == "sqlite":
        servers["appliance"] = Server(f"{stack}-appliance", [str(BIN / "python"), "-m", "appliance", "serve",
                                                             "--port", str(port_a), "--threads", "8"],
                                      env, ROOT, port_a)
        servers["ceiling"] = Server(f"{stack}-ceiling", [str(BIN / "waitress-serve"), "--threads", "8",
                                                         "--listen", f"127.0.0.1:{port_b}",
                                                         "--call", "ingest_ceiling:create_app"],
                                    env, ROOT / "bench", port_b)
    else:
        servers["appliance"] = Server(f"{stack}-appliance", [str(BIN / "gunicorn"), *GUNICORN, "--bind",
                                                             f"127.0.0.1:{port_a}", "appliance.web:create_app()"],
                                      env, ROOT, port_a)
        servers["ceiling"] = Server(f"{stack}-ceiling", [str(BIN / "gunicorn"), *GUNICORN, "--bind",
                                                         f"127.0.0.1:{port_b}", "ingest_ceiling:create_app()"],
                                    env, ROOT / "bench", port_b)
    servers["key"], servers["secret"] = key, secret
    return servers


# -- the load --------------------------------------------------------------------------

async def _connection(port, key, secret, tag, deadline, latencies, statuses):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        while time.perf_counter() < deadline:
            sender = f"{tag}-{sent // 2}"
            raw = json.dumps({"id": f"{tag}-{sent}", "sender_id": sender, "name": f"Customer {sender}",
                              "body": BODY}).encode()
            headers = signed_headers(secret, raw)
            head = (f"POST /hooks/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(raw)}\r\nX-Timestamp: {headers['X-Timestamp']}\r\n"
                    f"X-Signature: {headers['X-Signature']}\r\n\r\n").encode()
            began = time.perf_counter()
            writer.write(head + raw)
            status_line = await reader.readline()
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            status = int(status_line.split()[1]) if status_line else 0
            statuses[status] = statuses.get(status, 0) + 1
            sent += 1
            if close or not status_line:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def _load(port, key, secret, concurrency, seconds, run_tag):
    latencies, statuses = [], {}
    began = time.perf_counter()
    deadline = began + seconds
    try:
        await asyncio.wait_for(asyncio.gather(*(
            _connection(port, key, secret, f"{run_tag}c{i}", deadline, latencies, statuses)
            for i in range(concurrency))), seconds + 60)
    except TimeoutError:
        raise SystemExit(f"the server on port {port} stopped answering for a minute ({run_tag})") from None
    elapsed = time.perf_counter() - began
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    good = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {"rate": good / elapsed, "p99_ms": p99 * 1000, "errors": {s: n for s, n in statuses.items()
                                                                   if not 200 <= s < 300}}


def load(port, key, secret, concurrency, seconds, run_tag):
    return asyncio.run(_load(port, key, secret, concurrency, seconds, run_tag))


# -- the report --------------------------------------------------------------------------

def spread(values, fmt="{:.0f}"):
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="concurrency 16 only, 3 x 2 s (under 60 s)")
    parser.add_argument("--stacks", default="sqlite,postgres")
    parser.add_argument("--concurrency", default=None, help="comma-separated (default 4,16,64; quick: 16)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    levels = [int(c) for c in (args.concurrency or ("16" if args.quick else "4,16,64")).split(",")]
    repeats = args.repeats or (3 if args.quick else 5)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    stacks = [s for s in args.stacks.split(",") if s]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the servers and the cluster are stopped
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    pg = TempPostgres().start() if "postgres" in stacks else None
    medians = {}
    try:
        for stack in stacks:
            servers = start_stack(stack, work, pg)
            try:
                key, secret = servers["key"], servers["secret"]
                for who in ("appliance", "ceiling"):  # warm both: imports, first connections, caches
                    load(servers[who].port, key, secret, 4, 1.0, f"warm-{who}")
                print(f"{stack}: {'waitress 8 threads' if stack == 'sqlite' else 'gunicorn gthread 3x4'}, "
                      f"{repeats} x {seconds:g} s per figure; msg/s min/median/max", flush=True)
                for level in levels:
                    results = {"appliance": [], "ceiling": []}
                    for rep in range(repeats):
                        order = ("appliance", "ceiling") if rep % 2 == 0 else ("ceiling", "appliance")
                        for who in order:
                            results[who].append(load(servers[who].port, key, secret, level, seconds,
                                                     f"{stack}{level}r{rep}{who[0]}"))
                    a = [r["rate"] for r in results["appliance"]]
                    b = [r["rate"] for r in results["ceiling"]]
                    ratios = [x / y for x, y in zip(a, b, strict=True)]
                    errors = {}
                    for r in results["appliance"] + results["ceiling"]:
                        for s, n in r["errors"].items():
                            errors[s] = errors.get(s, 0) + n
                    line = (f"  c={level:<3} appliance {spread(a)}  ceiling {spread(b)}  "
                            f"ratio {spread(ratios, '{:.2f}')}")
                    if level == 16 or len(levels) == 1:
                        line += (f"  p99 ms appliance {spread([r['p99_ms'] for r in results['appliance']])}"
                                 f" ceiling {spread([r['p99_ms'] for r in results['ceiling']])}")
                    if errors:
                        line += f"  non-2xx {errors}"
                    print(line, flush=True)
                    if level == 16 or stack not in medians:
                        medians[stack] = statistics.median(ratios)
            finally:
                for who in ("appliance", "ceiling"):
                    servers[who].stop()
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("ingest ratio: " + " ".join(f"{s} {medians.get(s, float('nan')):.2f}" for s in ("sqlite", "postgres")))


if __name__ == "__main__":
    main()
