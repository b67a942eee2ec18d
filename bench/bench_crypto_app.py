"""Encryption cost as the app sees it: real services and views, encrypted vs plaintext models.

    python bench/bench_crypto_app.py [--messages 3000] [--pages 150] [--runs 4]

Each run is a fresh process with a fresh SQLite instance (WAL). It ingests
inbound messages through ``conversations.ingest_inbound`` (what the chat
widget and webhooks call), then an agent reads the inbox page and opens
conversations through the Flask test client (routing, access checks,
queries, decryption, Jinja rendering). The plaintext variant is the same
code with the encrypted field types swapped for plain ones before the models
are imported (bench-only: ``--variant plaintext`` of this script); lookups by
e-mail then compare the stored normalised value instead of a blind index.

Runs alternate plaintext/encrypted; each reports this process's CPU time and
wall time; the summary gives the median ratio. bench/bench_crypto.py measures
the data layer alone (no HTTP, no templates): the worst case for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def install_plaintext_fields() -> None:
    """Swap the encrypted field types for plain ones; must run before appliance.web.models is imported."""
    from peewee import BlobField, TextField

    from appliance.web.crypto import blind_index, fields

    class PlainText(TextField):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)

    class PlainIndex(BlobField):
        def __init__(self, source, kind, **kw):
            kw.setdefault("null", True)
            super().__init__(**kw)
            self.source, self.kind = source, kind

    class PlainModel:
        @classmethod
        def index_match(cls, tenant_id, source, value):
            field = getattr(cls, source)
            try:
                norm = blind_index.NORMALISERS[getattr(cls, f"{source}_bidx").kind](value)
            except blind_index.NormalisationError:
                return field.is_null(False) & field.is_null(True)
            if norm.startswith("national:"):
                norm = norm[len("national:"):]
            return field == norm

    fields.EncryptedTextField = PlainText
    fields.EncryptedBytesField = BlobField
    fields.BlindIndexField = PlainIndex
    fields.EncryptedModel = PlainModel


def run_variant(variant: str, messages: int, pages: int) -> dict:
    if variant == "plaintext":
        install_plaintext_fields()
    sys.path.insert(0, str(ROOT))
    import random

    from appliance.core.config import Instance
    from appliance.web import create_app
    from appliance.web import provisioning as setup
    from appliance.web.db import database_proxy
    from appliance.web.models.contact_center import Contact, Conversation
    from appliance.web.services import catalogue, conversations, tenants

    home = Path(tempfile.mkdtemp(prefix=f"bench-app-{variant}-"))
    setup.ensure_config(home, {"database_url": "sqlite:///appliance.db"})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    app = create_app(instance=instance)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    rng = random.Random(3)
    with app.app_context():
        database_proxy.connect(reuse_if_open=True)
        provider = tenants.create_provider("Provider")
        bank = tenants.create_child(provider, "Bank", "enterprise")
        tenants.invite_member(bank, email="agent@bank.test", name="Agent", password="bench-password-1",
                              role="agent")
        channel = catalogue.create_channel(bank, kind="webchat", name="chat")
        people = [(f"Customer {i} Ivanova", f"customer{i}@example{i % 40}.org") for i in range(messages // 6)]
        stream = [(people[rng.randrange(len(people))],
                   " ".join(rng.choice(["card", "blocked", "passport", "limit", "refund", "statement"])
                            for _ in range(rng.randint(8, 40)))) for _ in range(messages)]
        cpu, wall = time.process_time(), time.perf_counter()
        for (name, email), body in stream:
            conversations.ingest_inbound(channel, body=body, name=name, email=email)
        ingest = (time.process_time() - cpu, time.perf_counter() - wall)
        conv_ids = [c.id for c in Conversation.select(Conversation.id)]
        contact_count = Contact.select().count()
        bank_id = bank.id
        database_proxy.close()
    client = app.test_client()
    r = client.post("/login", data={"email": "agent@bank.test", "password": "bench-password-1"})
    assert r.status_code == 302, r.status_code
    size = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(pages):
        page = client.get(f"/t/{bank_id}/inbox")
        conv = client.get(f"/t/{bank_id}/conversations/{conv_ids[(i * 7919) % len(conv_ids)]}")
        assert page.status_code == 200 and conv.status_code == 200
        size += len(page.data) + len(conv.data)
    read = (time.process_time() - cpu, time.perf_counter() - wall)
    return {"variant": variant, "ingest_cpu": ingest[0], "ingest_wall": ingest[1], "read_cpu": read[0],
            "read_wall": read[1], "contacts": contact_count, "html_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--pages", type=int, default=150, help="inbox page + one conversation page each")
    parser.add_argument("--runs", type=int, default=4, help="runs per variant, alternating")
    parser.add_argument("--variant", choices=["plaintext", "encrypted"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.messages, args.pages)))
        return
    results = {"plaintext": [], "encrypted": []}
    for i in range(args.runs):
        for variant in (("plaintext", "encrypted") if i % 2 == 0 else ("encrypted", "plaintext")):
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--messages", str(args.messages),
                                  "--pages", str(args.pages)], capture_output=True, text=True, check=True,
                                 env=dict(os.environ, APPLIANCE_HOME=""))
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[variant].append(res)
            print(f"run {i + 1} {variant:9} ingest {res['ingest_cpu']:6.2f}s cpu/{res['ingest_wall']:6.2f}s wall  "
                  f"reads {res['read_cpu']:6.2f}s cpu/{res['read_wall']:6.2f}s wall", flush=True)
    p, e = results["plaintext"], results["encrypted"]
    assert p[0]["contacts"] == e[0]["contacts"], "both variants must hold the same data"
    print()
    print(f"{args.messages} inbound messages via ingest_inbound; {args.pages} x (inbox page + conversation page) "
          f"via the Flask test client; {args.runs} runs per variant; SQLite WAL; {os.cpu_count()} CPUs")
    for what, unit, count in (("ingest", "messages/s", args.messages), ("read", "page pairs/s", args.pages)):
        for kind in ("cpu", "wall"):
            key = f"{what}_{kind}"
            mp, me = statistics.median(r[key] for r in p), statistics.median(r[key] for r in e)
            print(f"{what:6} {kind:4}  plaintext {count / mp:8,.0f} {unit}  encrypted {count / me:8,.0f} {unit}  "
                  f"cost ratio {me / mp:.3f}x (medians; goal <= 1.10x)")


if __name__ == "__main__":
    main()
