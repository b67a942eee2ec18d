"""How long do backup, verify and restore take for a database of N messages?

One run, one instance (SQLite by default, ``--postgres`` for a throwaway PostgreSQL
cluster as the tests use): bulk-load N messages (contacts, conversations, message
bodies encrypted), then time ``create_backup``, the decrypt-check of the archive,
``verify_backup`` (restore into a scratch database) and ``restore_backup``. The baseline, measured in
the same run on the same disk, is the engine's own unencrypted copy, out and back in:
a plain file copy of the SQLite database, or ``pg_dump -Fc`` to a file and
``pg_restore --single-transaction`` of it into an empty database.
Figures are printed as seconds and as ratios to that baseline.

    python bench/bench_backup.py                        # 1,000,000 messages, SQLite
    python bench/bench_backup.py --messages 200000 --postgres
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_instance

MESSAGES_PER_CONVERSATION = 5
BATCH = 5000


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    from appliance.web import create_app
    from appliance.web.backup import create_backup, restore_backup, verify_backup
    from appliance.web.backup.service import open_archive
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import tenants

    root = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    server = None
    url = "sqlite:///appliance.db"
    if args.postgres:
        from tests.pg import TempPostgres

        server = TempPostgres().start()
        url = server.url(server.create_database())
    try:
        instance = make_instance(root / "home", url)
        app = create_app(instance=instance)
        database = app.extensions["database"]
        load_s, _ = timed(lambda: _load(app, database, args.messages, tenants, Channel))
        print(f"loaded {args.messages:,} messages in {load_s:.1f} s ({'PostgreSQL' if server else 'SQLite'})")

        baseline = _baseline(instance, root)
        create_s, (path, manifest) = timed(lambda: create_backup(instance))
        db_bytes = manifest.part("database").plain_bytes
        check_s, _ = timed(lambda: open_archive(instance, path).check())
        verify_s, _ = timed(lambda: verify_backup(instance, path))
        database.close()
        restore_s, _ = timed(lambda: restore_backup(instance, path))

        print(f"database part {db_bytes / 2**20:,.1f} MiB, archive {path.stat().st_size / 2**20:,.1f} MiB")
        for what, (secs, label) in baseline.items():
            print(f"baseline for {what}: {label}: {secs:.2f} s")
        for label, secs, against in (("backup create", create_s, "backup"), ("decrypt-check", check_s, "backup"),
                                     ("verify (scratch restore)", verify_s, "restore"),
                                     ("restore", restore_s, "restore")):
            print(f"{label:26} {secs:8.2f} s  {db_bytes / 2**20 / secs:8.1f} MiB/s  "
                  f"x{secs / baseline[against][0]:.2f} of the {against} baseline")
    finally:
        if server:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _load(app, database, messages, tenants, Channel):
    with app.app_context(), database.connection_context():
        provider = tenants.create_provider("Bench provider")
        tenant = tenants.create_child(provider, "Bench bank", "enterprise")
        channel = Channel.create(tenant=tenant, kind="webchat", name="chat")
        seed(tenant, channel, messages // MESSAGES_PER_CONVERSATION, random.Random(1))


def seed(tenant, channel, conversations: int, rng: random.Random):
    """Bulk-load conversations with their contacts and messages (personal fields encrypted)."""
    from appliance.web.db import database_proxy
    from appliance.web.models.base import utcnow
    from appliance.web.models.contact_center import Contact, Conversation, Message

    now = utcnow()
    for first in range(0, conversations, BATCH):
        n = min(BATCH, conversations - first)
        with database_proxy.atomic():
            Contact.insert_many(Contact.prepare_rows([
                {"tenant": tenant.id, "name": f"Customer {first + i}", "email": f"c{first + i}@example.test",
                 "phone": f"+4930{first + i:08d}"} for i in range(n)])).execute()
            contact_ids = [c.id for c in Contact.select(Contact.id).order_by(Contact.id.desc()).limit(n)][::-1]
            Conversation.insert_many(Conversation.prepare_rows([
                {"tenant": tenant.id, "channel": channel.id, "contact": contact_ids[i], "status": "open",
                 "message_count": MESSAGES_PER_CONVERSATION, "created_at": now, "last_message_at": now}
                for i in range(n)])).execute()
            conv_ids = [c.id for c in Conversation.select(Conversation.id).order_by(Conversation.id.desc()).limit(n)]
            rows = [{"conversation": cid, "tenant": tenant.id, "direction": "in" if k % 2 == 0 else "out",
                     "body": f"Message {k} about the card ending {rng.randrange(1000, 9999)}", "created_at": now}
                    for cid in conv_ids for k in range(MESSAGES_PER_CONVERSATION)]
            Message.insert_many(Message.prepare_rows(rows)).execute()


def _baseline(instance, root) -> dict:
    """The engine's own unencrypted copy out and back in, timed separately."""
    from appliance.web.backup import dumps

    url = instance.database_url
    if dumps.kind_of(url) == "sqlite":
        copy = root / "copy.db"
        out_s, _ = timed(lambda: shutil.copyfile(dumps.sqlite_path(url), copy))
        in_s, _ = timed(lambda: shutil.copyfile(copy, root / "copy-back.db"))
        copy.unlink()
        (root / "copy-back.db").unlink()
        return {"backup": (out_s, "plain file copy of the database"),
                "restore": (in_s, "plain file copy back")}
    bindir = dumps.pg_bindir()
    env = dumps.pg_env(url)
    dump = root / "plain.dump"
    out_s, _ = timed(lambda: subprocess.run([str(bindir / "pg_dump"), "-Fc", "-f", str(dump)], env=env, check=True))
    dumps.pg_admin(url, 'CREATE DATABASE "bench_baseline"')

    def restore():
        subprocess.run([str(bindir / "pg_restore"), "--no-owner", "--single-transaction", "-d", "bench_baseline",
                        str(dump)], env=env, check=True)

    in_s, _ = timed(restore)
    dumps.pg_admin(url, 'DROP DATABASE "bench_baseline"')
    dump.unlink()
    return {"backup": (out_s, "unencrypted pg_dump -Fc to a file"),
            "restore": (in_s, "pg_restore --single-transaction of it into an empty database")}


if __name__ == "__main__":
    main()
