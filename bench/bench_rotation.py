"""Tenant key rotation speed on SQLite and PostgreSQL: rows re-encrypted per second.

    python bench/bench_rotation.py                      # 200,000 messages per database
    python bench/bench_rotation.py --messages 50000     # quicker

One tenant's conversations, contacts and messages (bodies, names, e-mails, phones, all
encrypted) are bulk-loaded with bench/bench_inbox.py's generator into a fresh instance
per database (PostgreSQL: a throwaway cluster, tests/pg.py); then the tenant's data key
is rotated as ``appliance keys rotate-tenant`` does it (TenantRotation, batch
``--batch-size``, the final sweep and retiring the old key included, no settle wait:
one process). Prints rows/s per database and the machine's load average beside it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_inbox import seed

from tests.helpers import make_instance
from tests.pg import TempPostgres


def rotate_once(url: str, messages: int, batch_size: int) -> tuple[int, float]:
    from appliance.web import create_app
    from appliance.web.crypto import get_keyring
    from appliance.web.crypto.rotation import TenantRotation
    from appliance.web.models.contact_center import Channel
    from appliance.web.services import tenants

    instance = make_instance(Path(tempfile.mkdtemp(prefix="bench-rotation-")) / "home", url)
    app = create_app(instance=instance)
    database = app.extensions["database"]
    with app.app_context(), database.connection_context():
        provider = tenants.create_provider("Bench provider")
        tenant = tenants.create_child(provider, "Bench bank", "enterprise")
        channel = Channel.create(tenant=tenant, kind="webchat", name="chat")
        seed(database, tenant, channel.id, messages, random.Random(1))
        if url.startswith("postgresql"):
            # As a table is long after its rows were written: vacuumed, its statistics current.
            # Right after a bulk load, autovacuum would run during the timed rotation, and its
            # ANALYZE's snapshot would keep the rotation's old row versions from being pruned.
            database.execute_sql("VACUUM ANALYZE")
        keyring = get_keyring()
        keyring.active_ttl = 0.0  # one process: the settle wait would only add idle time
        rotation = TenantRotation(tenant.id, batch_size=batch_size, keyring=keyring)
        rotation.start()
        started = time.perf_counter()
        rotation.run(settle=False)
        elapsed = time.perf_counter() - started
        assert rotation.result.retired, rotation.result
        return rotation.result.rows_rewritten, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args()
    for kind in args.databases.split(","):
        pg = TempPostgres().start() if kind == "postgres" else None
        try:
            url = pg.url(pg.create_database()) if pg else "sqlite:///appliance.db"
            rows, elapsed = rotate_once(url, args.messages, args.batch_size)
        finally:
            if pg:
                pg.stop()
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{kind:8} rotate {rows:,} rows (batch {args.batch_size}) in {elapsed:.2f} s = "
              f"{rows / elapsed:,.0f} rows/s (goal >= 50,000 on PostgreSQL)  load average {load}", flush=True)


if __name__ == "__main__":
    main()
