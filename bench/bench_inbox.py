"""Does the operator inbox stay fast with millions of messages?

One run, one instance (SQLite, the embedded default, or ``--postgres`` for a throwaway
PostgreSQL cluster; encryption on): measure full HTTP requests through the app
(routing, access checks, queries, decryption, HTML) on a small data set, then grow the
same database to the large one and measure again. Prints milliseconds per request
(median and 95th percentile of repeats, and the median CPU time of the process) and the
large/small ratio of the medians; the goals are a ratio near 1 (keyset pagination and
composite indexes: cost independent of size) and a p95 of at most 50 ms.

The data is what ingest leaves: several tenants (the measured one holds most of it),
about ten messages per conversation, two conversations per contact, the newest
conversations of each load open, pending or resolved and nearly all older ones resolved,
most conversations assigned, a tenth labelled, read markers for the assignee on most,
the sealed preview, priority and unread state on every conversation. The schema comes
from the app's migrations (every real index in place during the load); rows are written
in bulk (``executemany`` in large transactions on SQLite, ``COPY`` on PostgreSQL), each
personal value sealed with its tenant's key and the row's uid exactly as
``prepare_rows`` does, so the pages decrypt every value they show for real.

    python bench/bench_inbox.py                                  # 1,000,000 messages
    python bench/bench_inbox.py --messages 10000000 --postgres   # 10 M on PostgreSQL
    python bench/bench_inbox.py --messages 200000 --explain      # plans of slow requests
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import PASSWORD, csrf_token, make_instance

CONVERSATIONS_PER_CHUNK = 10_000  # one transaction: ~100,000 messages
TENANT_SHARES = (0.7, 0.1, 0.1, 0.1)  # the first tenant is the one measured
AGENTS, LABELS = 10, 5
# Conversations get resolved: the newest of each load are mixed, the older ones closed but
# for a few stragglers, so a tenant with a million conversations has thousands open.
RECENT_SHARE, RECENT_MIN = 0.02, 500
RECENT_STATUSES = ("open",) * 4 + ("pending",) * 2 + ("resolved",) * 4
OLD_STATUSES = ("open", "pending") + ("resolved",) * 998
SPAN = dt.timedelta(days=365)  # the timeline the conversations are spread over
GOAL_MS = 50


class BulkWriter:
    """Writes tuples into a table: ``executemany`` on SQLite, ``COPY`` on PostgreSQL."""

    def __init__(self, database):
        from peewee import PostgresqlDatabase

        self.database = database
        self.postgres = isinstance(database, PostgresqlDatabase)

    def insert(self, table: str, columns: tuple, rows: list):
        if not rows:
            return
        cols = ", ".join(f'"{c}"' for c in columns)
        cursor = self.database.cursor()
        if not self.postgres:
            cursor.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(columns))})', rows)
            return
        buf = io.StringIO()
        write = buf.write
        for row in rows:
            write("\t".join(_copy_text(v) for v in row))
            write("\n")
        buf.seek(0)
        cursor.copy_expert(f'COPY "{table}" ({cols}) FROM STDIN', buf)

    def reset_sequences(self, tables):
        if self.postgres:
            for table in tables:
                self.database.execute_sql(
                    f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM \"{table}\"))")


def _copy_text(value) -> str:
    # The generated values never hold tabs, newlines or backslashes, so only NULL,
    # bytes and booleans need COPY's text escapes.
    if value is None:
        return "\\N"
    t = type(value)
    if t is bytes:
        return "\\\\x" + value.hex()
    if t is bool:
        return "t" if value else "f"
    return str(value)


class TenantData:
    """One tenant's fixed parts (key, channel, agents, labels) and its running counters."""

    def __init__(self, tenant, channel_id, agents, labels, share):
        from appliance.web.crypto import keyring

        self.tenant = tenant
        self.id = tenant.id
        self.key = keyring.get_keyring().active(tenant.id)
        self.channel_id = channel_id
        self.agents = agents
        self.labels = labels
        self.share = share
        self.conversations = 0  # generated so far
        self.contact_number = 0


class Seeder:
    """Generates the tenants' conversations, contacts, messages, labels and read markers in bulk."""

    def __init__(self, database, tenants: list[TenantData], total_messages: int, rng):
        from appliance.web.crypto import envelope
        from appliance.web.models.base import utcnow
        from appliance.web.models.contact_center import (
            Contact,
            Conversation,
            ConversationLabel,
            ConversationRead,
            Message,
        )

        self.models = (Contact, Conversation, ConversationLabel, ConversationRead, Message)
        self.writer = BulkWriter(database)
        self.database = database
        self.tenants = tenants
        self.rng = rng
        self.envelope = envelope
        self.now = utcnow()
        # Each tenant's timeline ends now at the final size: the conversations added later
        # are the newer ones, as in a growing installation.
        self.total_convs = {t.id: max(1, int(total_messages * t.share / 10)) for t in tenants}
        self.next_id = {}
        for model in self.models:
            table = model._meta.table_name
            row = database.execute_sql(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"').fetchone()
            self.next_id[table] = row[0] + 1
        self.bodies = [f"Message about the card ending {n:04d}, please call me back".encode()
                       for n in rng.sample(range(10000), 200)]

    def _ids(self, table, n):
        first = self.next_id[table]
        self.next_id[table] = first + n
        return first

    def _seal(self, key, model, tenant_id, column, uid_bytes, plain: bytes) -> bytes:
        spec = model._crypto_spec()
        return self.envelope.seal(key.aead, key.key_id, spec.prefix(tenant_id, column), uid_bytes, plain)

    def grow(self, messages: int, progress: bool = False):
        """Adds about ``messages`` messages, split over the tenants by their shares."""
        targets = [(t, max(1, int(messages * t.share / 10))) for t in self.tenants]
        total = sum(n for _, n in targets)
        done_convs = done_msgs = 0
        started = time.perf_counter()
        last_print = started
        for tenant, conversations in targets:
            recent_from = tenant.conversations + conversations - max(RECENT_MIN, int(conversations * RECENT_SHARE))
            for first in range(0, conversations, CONVERSATIONS_PER_CHUNK):
                n = min(CONVERSATIONS_PER_CHUNK, conversations - first)
                with self.database.atomic():
                    done_msgs += self._chunk(tenant, n, recent_from)
                done_convs += n
                now = time.perf_counter()
                if progress and (now - last_print > 10 or done_convs == total):
                    last_print = now
                    rate = done_msgs / (now - started)
                    left = (total - done_convs) * (done_msgs / done_convs) / rate
                    print(f"  {done_msgs:>12,} messages {done_convs:>10,} conversations  "
                          f"{rate:,.0f} messages/s  ETA {left / 60:5.1f} min", flush=True)
        return done_msgs

    def _chunk(self, t: TenantData, n: int, recent_from: int) -> int:
        from appliance.web.crypto import blind_index, keyring

        Contact, Conversation, _, _, Message = self.models
        rng = self.rng
        kr = keyring.get_keyring()
        key = t.key
        tid = t.id
        step = SPAN / self.total_convs[tid]
        start_at = self.now - SPAN
        contacts, convs, labels, reads, messages = [], [], [], [], []
        conv_id = self._ids("conversation", n)
        msg_id = self.next_id["message"]
        contact_id = self.next_id["contact"] - 1
        for i in range(n):
            k = t.conversations + i
            if k % 2 == 0:  # two conversations per contact
                contact_id += 1
                c = t.contact_number
                t.contact_number += 1
                u = uuid.uuid4()
                ub = u.bytes
                name, email, phone = f"Customer {c}", f"c{c}@example.test", f"+4930{c:08d}"
                contacts.append((
                    contact_id, tid, u.hex,
                    self._seal(key, Contact, tid, "name", ub, name.encode()),
                    self._seal(key, Contact, tid, "email", ub, email.encode()),
                    self._seal(key, Contact, tid, "phone", ub, phone.encode()),
                    blind_index.compute(tid, "email", email, kr), blind_index.compute(tid, "phone", phone, kr),
                    blind_index.compute(tid, "name", name, kr), True, str(start_at + step * k)))
            created = start_at + step * k
            count = rng.randint(6, 14)
            gap = dt.timedelta(seconds=rng.randint(20, 600))
            last_in = None
            body = None
            for m in range(count):
                u = uuid.uuid4()
                at = created + gap * m
                direction = "in" if m % 2 == 0 else "out"
                if direction == "in":
                    last_in = at
                body = self.bodies[rng.randrange(200)]
                messages.append((msg_id, conv_id + i, tid, u.hex, direction,
                                 self._seal(key, Message, tid, "body", u.bytes, body), str(at)))
                msg_id += 1
            last_at = created + gap * (count - 1)
            statuses = RECENT_STATUSES if k >= recent_from else OLD_STATUSES
            status = statuses[rng.randrange(len(statuses))]
            assignee = t.agents[rng.randrange(len(t.agents))] if rng.random() < 0.9 else None
            u = uuid.uuid4()
            convs.append((conv_id + i, tid, u.hex, t.channel_id, contact_id, status, assignee, count,
                          str(created), str(last_at),
                          self._seal(key, Conversation, tid, "preview", u.bytes, body[:80]),
                          direction, str(last_in), rng.choice((0, 1, 1, 1, 2, 3))))
            if t.labels and rng.random() < 0.1:
                labels.append((conv_id + i, t.labels[rng.randrange(len(t.labels))]))
            if assignee is not None and rng.random() < 0.7:
                reads.append((assignee, conv_id + i, str(last_at)))
        self.next_id["message"] = msg_id
        self.next_id["contact"] = contact_id + 1
        t.conversations += n
        w = self.writer
        w.insert("contact", ("id", "tenant_id", "uid", "name", "email", "phone", "email_bidx", "phone_bidx",
                             "name_bidx", "verified", "created_at"), contacts)
        w.insert("conversation", ("id", "tenant_id", "uid", "channel_id", "contact_id", "status", "assignee_id",
                                  "message_count", "created_at", "last_message_at", "preview", "last_direction",
                                  "last_inbound_at", "priority"), convs)
        w.insert("message", ("id", "conversation_id", "tenant_id", "uid", "direction", "body", "created_at"),
                 messages)
        w.insert("conversation_label", ("conversation_id", "label_id"), labels)
        w.insert("conversation_read", ("user_id", "conversation_id", "read_at"), reads)
        return len(messages)

    def finish(self):
        self.writer.reset_sequences(("contact", "conversation", "message", "conversation_label",
                                     "conversation_read"))
        if self.writer.postgres:
            # Autovacuum would get there on a live system: visibility map and statistics.
            self.database.execute_sql("VACUUM ANALYZE")
        else:
            self.database.execute_sql("ANALYZE")


def seed(database, tenant, channel_id, messages: int, rng) -> int:
    """About ``messages`` messages for one tenant, unassigned and unlabelled (bench_rotation.py)."""
    seeder = Seeder(database, [TenantData(tenant, channel_id, [None], [], 1.0)], messages, rng)
    added = seeder.grow(messages)
    seeder.finish()
    return added


def setup_tenants(shares):
    from appliance.web.models.contact_center import Channel, Label
    from appliance.web.models.tenancy import Membership, User
    from appliance.web.services import tenants
    from appliance.web.services.passwords import hash_password

    provider = tenants.create_provider("Bench provider")
    digest = hash_password(PASSWORD)
    out = []
    for n, share in enumerate(shares):
        tenant = tenants.create_child(provider, f"Bench bank {n}", "enterprise")
        agents = []
        for i in range(AGENTS):
            user = User.create(email=f"agent{i}.{n}@bench.test", name=f"Agent {i}.{n}", password_hash=digest)
            Membership.create(user=user, tenant=tenant, role="agent" if i else "supervisor")
            agents.append(user.id)
        channel = Channel.create(tenant=tenant, kind="webchat", name="chat")
        labels = [Label.create(tenant=tenant, name=f"label {i}").id for i in range(LABELS)]
        out.append(TenantData(tenant, channel.id, agents, labels, share))
    return out


class QueryLog(logging.Handler):
    """Collects the (sql, params) peewee logs while a request runs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.queries = []

    def emit(self, record):
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            self.queries.append(record.msg)


def explain(app, database, client, label, path, postgres):
    """Prints each SELECT of one request with its time and plan."""
    log = logging.getLogger("peewee")
    handler = QueryLog()
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.DEBUG)
    try:
        client.get(path)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    print(f"\n--- {label}: {path} ({len(handler.queries)} queries)")
    with app.app_context(), database.connection_context():
        for sql, params in handler.queries:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            t = time.perf_counter()
            database.execute_sql(sql, params).fetchall()
            ms = (time.perf_counter() - t) * 1000
            if postgres:
                plan = [r[0] for r in database.execute_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)]
            else:
                plan = [f"{r[1]}/{r[0]} {r[3]}" for r in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params)]
            print(f"{ms:8.2f} ms  {sql[:300]}  {params[:6]}")
            for line in plan:
                print(f"            {line}")


def measure(client, paths: dict, repeats: int) -> dict:
    out = {}
    for label, path in paths.items():
        page = client.get(path).get_data(as_text=True)  # also warms the caches
        # The loader's sealed values must open for real, or the figures would skip the decryption.
        assert "[integrity error]" not in page, (label, "a sealed value did not decrypt")
        shown = "Customer 7" if label.startswith("contact") else "card ending"
        assert shown in page, (label, f"no decrypted {shown!r} on the page")
        times, cpu = [], []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            resp = client.get(path)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            assert resp.status_code == 200, (label, resp.status_code)
        times.sort()
        # Wall time on a shared machine swings with other jobs; the process's CPU time shows the work.
        out[label] = (statistics.median(times) * 1000, times[min(len(times) - 1, int(len(times) * 0.95))] * 1000,
                      statistics.median(cpu) * 1000)
    return out


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000, help="messages in the small data set")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster instead of SQLite")
    parser.add_argument("--explain", action="store_true", help="print query plans of requests over the p95 goal")
    parser.add_argument("--dir", default=None, help="where the database goes (default: the temp directory)")
    args = parser.parse_args()

    from appliance.web import create_app
    from appliance.web.models.contact_center import Conversation

    root = Path(tempfile.mkdtemp(prefix="bench-inbox-", dir=args.dir))
    server = None
    url = "sqlite:///appliance.db"
    if args.postgres:
        from tests.pg import TempPostgres

        server = TempPostgres().start()
        url = server.url(server.create_database())
    try:
        home = root / "home"
        instance = make_instance(home, url)
        app = create_app(instance=instance)
        database = app.extensions["database"]
        engine = "PostgreSQL" if server else "SQLite"
        with app.app_context(), database.connection_context():
            if not server:
                # The loader's own connection only: a larger page cache for the index writes.
                database.execute_sql("PRAGMA cache_size = -1048576")
            tenants = setup_tenants(TENANT_SHARES)
            seeder = Seeder(database, tenants, args.messages, random.Random(1))
            seeder.grow(args.small)
            seeder.finish()
            measured = tenants[0]
            probe = (Conversation.select().where(Conversation.tenant == measured.id)
                     .order_by(Conversation.id.desc()).first())

        client = app.test_client()
        token = csrf_token(client)
        client.post("/login", data={"email": "agent0.0@bench.test", "password": PASSWORD, "csrf_token": token})

        def paths(probe_id):
            base = f"/t/{measured.id}"
            cursor_page = client.get(f"{base}/inbox?status=open").get_data(as_text=True)
            older = re.search(r'href="([^"]*cursor=[^"]+)"', cursor_page)
            deep = older.group(1).replace("&amp;", "&") if older else f"{base}/inbox"
            return {
                "inbox, first page": f"{base}/inbox",
                "inbox, open, next page": deep,
                "inbox, assigned to me": f"{base}/inbox?assignee=me",
                "inbox, pending": f"{base}/inbox?status=pending",
                "inbox, most urgent first": f"{base}/inbox?sort=priority",
                "inbox, one label": f"{base}/inbox?label={measured.labels[0]}",
                "inbox, search by name": f"{base}/inbox?status=all&q=customer+7",
                "inbox, search by e-mail": f"{base}/inbox?status=all&q=c7%40example.test",
                "conversation view": f"{base}/conversations/{probe_id}",
                "contact search by e-mail": f"{base}/contacts?q=c7@example.test",
            }

        small_load = load_average()
        small = measure(client, paths(probe.id), args.repeats)
        print(f"small set measured (load average {small_load} / {load_average()}); loading "
              f"{args.messages - args.small:,} messages on {engine}", flush=True)
        t = time.perf_counter()
        with app.app_context(), database.connection_context():
            if not server:
                database.execute_sql("PRAGMA cache_size = -1048576")
            added = seeder.grow(args.messages - args.small, progress=True)
            load_s = time.perf_counter() - t
            seeder.finish()
            finish_s = time.perf_counter() - t - load_s
            probe = (Conversation.select().where(Conversation.tenant == measured.id)
                     .order_by(Conversation.id.desc()).first())
        large_load = load_average()
        large_paths = paths(probe.id)
        large = measure(client, large_paths, args.repeats)
        with app.app_context(), database.connection_context():
            total = database.execute_sql("SELECT COUNT(*) FROM message").fetchone()[0]
            convs = database.execute_sql("SELECT COUNT(*) FROM conversation").fetchone()[0]
            mine = Conversation.select().where(Conversation.tenant == measured.id).count()
            if server:
                size = database.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]
            else:
                size = (home / "appliance.db").stat().st_size
        print(f"\nInbox on {engine} with encryption: {args.small:,} vs {total:,} messages "
              f"({convs:,} conversations, {mine:,} of them in the measured tenant)")
        print(f"bulk load of {added:,} messages: {load_s / 60:.1f} min ({added / load_s:,.0f} messages/s), "
              f"then {'VACUUM ANALYZE' if server else 'ANALYZE'} {finish_s:.0f} s; database {size / 2**30:,.2f} GiB")
        print(f"load average (1/5/15 min): small set {small_load}, large set {large_load}, after {load_average()}")
        print(f"{'request':32} {'small ms':>9} {'p95':>7} {'cpu':>6} {'large ms':>9} {'p95':>7} {'cpu':>6} "
              f"{'ratio':>6}")
        for label in small:
            (sm, sp, sc), (lm, lp, lc) = small[label], large[label]
            flag = "  > goal" if lp > GOAL_MS else ""
            print(f"{label:32} {sm:9.2f} {sp:7.2f} {sc:6.2f} {lm:9.2f} {lp:7.2f} {lc:6.2f} {lm / sm:6.2f}{flag}")
        if args.explain:
            for label, path in large_paths.items():
                if large[label][1] > GOAL_MS or large[label][2] > GOAL_MS / 2:
                    explain(app, database, client, label, path, bool(server))
        database.close()
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
