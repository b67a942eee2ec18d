"""Cost of encryption at rest: ingest and inbox reads, encrypted vs plaintext, and rotation speed.

    python bench/bench_crypto.py [--messages 10000] [--contacts 1000] [--pages 300] [--rounds 5]

Two copies of the contact-center tables (contact, conversation, message) that
differ only in the field types: the encrypted copy uses the real encrypted
fields and blind indexes, the plaintext copy TextField and a plain e-mail
index. Each lives in its own SQLite file with the app's pragmas (WAL,
synchronous=normal). The workloads are what the app does:

* ingest: one transaction per inbound message: find the contact by e-mail
  (blind index vs plain index), create it if new, find or start its open
  conversation, insert the message, bump the conversation counters;
* inbox read: what appliance/web/views/inbox.py does for one inbox page (25
  conversations newest first, their contacts, status counts; the contact name
  and subject shown) and for one conversation view (the conversation, its
  contact card, its last 50 messages); every displayed field is read, so
  decrypted.

Rounds alternate between the variants and the best round counts, so drift in
the machine's speed does not favour either side. Then the encrypted database's
tenant key is rotated and the re-encryption rate reported in rows per second.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peewee import (
    AutoField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
    UUIDField,
    fn,
)

from appliance.web.crypto import (
    BlindIndexField,
    EncryptedModel,
    EncryptedTextField,
    KeyRing,
    MasterKey,
    set_keyring,
)
from appliance.web.crypto.master import generate_key
from appliance.web.crypto.rotation import TenantRotation
from appliance.web.crypto.tables import CRYPTO_MODELS
from appliance.web.db import SQLITE_PRAGMAS, database_proxy

TENANT = 1


def build_models(encrypted: bool, db):
    """The same three tables, encrypted or not, bound to ``db``."""
    mixins = (EncryptedModel, Model) if encrypted else (Model,)
    text = (lambda **kw: EncryptedTextField(**kw)) if encrypted else (lambda **kw: TextField(**kw))

    class Base(Model):
        class Meta:
            database = db

    contact_fields = {
        "id": AutoField(),
        "tenant": IntegerField(),
        "uid": UUIDField(default=uuid.uuid4, unique=True),
        "name": text(null=True),
        "email": text(null=True),
        "phone": text(null=True),
        "notes": text(null=True),
        "created_at": DateTimeField(default=_now),
    }
    if encrypted:
        contact_fields["email_bidx"] = BlindIndexField("email", "email")
        contact_fields["phone_bidx"] = BlindIndexField("phone", "phone")
    else:
        contact_fields["email"] = TextField(null=True, index=True)
    Contact = type("Contact", (*mixins[:-1], Base), {**contact_fields, "Meta": type("Meta", (), {
        "table_name": "contact", "indexes": ((("tenant", "email_bidx" if encrypted else "email"), False),)})})

    Conversation = type("Conversation", (*mixins[:-1], Base), {
        "id": AutoField(),
        "tenant": IntegerField(),
        "uid": UUIDField(default=uuid.uuid4, unique=True),
        "contact": ForeignKeyField(Contact, backref="conversations"),
        "status": CharField(max_length=10, default="open"),
        "subject": text(null=True),
        "message_count": IntegerField(default=0),
        "created_at": DateTimeField(default=_now),
        "last_message_at": DateTimeField(default=_now),
        "Meta": type("Meta", (), {"table_name": "conversation", "indexes": (
            (("tenant", "status", "last_message_at", "id"), False), (("contact", "status"), False))}),
    })

    Message = type("Message", (*mixins[:-1], Base), {
        "id": AutoField(),
        "tenant": IntegerField(),
        "uid": UUIDField(default=uuid.uuid4, unique=True),
        "conversation": ForeignKeyField(Conversation, backref="messages"),
        "direction": CharField(max_length=4, default="in"),
        "body": text(),
        "created_at": DateTimeField(default=_now),
        "Meta": type("Meta", (), {"table_name": "message", "indexes": ((("conversation", "id"), False),)}),
    })
    return Contact, Conversation, Message


def _now():
    import datetime

    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def make_stream(n_messages: int, n_contacts: int, seed: int = 11):
    rng = random.Random(seed)
    people = [{
        "name": f"Customer {i} {rng.choice(['Ivanova', 'Müller', 'Smith', 'Tanaka'])}",
        "email": f"customer{i}@example{rng.randrange(50)}.org",
        "phone": f"+44 20 7{i:06d}",
        "notes": "prefers e-mail; VIP since 2019" if i % 7 == 0 else None,
    } for i in range(n_contacts)]
    words = ["card", "balance", "blocked", "transfer", "passport", "address", "limit", "statement",
             "refund", "fee", "loan"]
    return [(people[rng.randrange(n_contacts)],
             " ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) + f" ref {i}")
            for i in range(n_messages)]


class Variant:
    def __init__(self, name: str, encrypted: bool, path: Path, keyring):
        self.name = name
        self.encrypted = encrypted
        self.path = path
        self.db = SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
        self.models = build_models(encrypted, self.db)
        self.keyring = keyring

    def reset(self):
        if not self.db.is_closed():
            self.db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.db.connect()
        self.db.create_tables(list(self.models))
        if self.encrypted:
            database_proxy.initialize(self.db)  # the key tables live in the same database
            self.db.create_tables(CRYPTO_MODELS)
            set_keyring(self.keyring)
            self.keyring.forget(list(self.keyring._by_id))
            self.keyring._verified = False
            self.keyring.ensure_tenant_keys(TENANT)

    def find_contact(self, email):
        Contact = self.models[0]
        if self.encrypted:
            q = Contact.select().where((Contact.tenant == TENANT) & Contact.index_match(TENANT, "email", email))
        else:
            q = Contact.select().where((Contact.tenant == TENANT) & (Contact.email == email.strip().casefold()))
        return q.first()

    def ingest(self, stream) -> None:
        Contact, Conversation, Message = self.models
        db = self.db
        for person, body in stream:
            with db.atomic("IMMEDIATE"):
                contact = self.find_contact(person["email"])
                if contact is None:
                    contact = Contact.create(tenant=TENANT, name=person["name"],
                                             email=person["email"].strip().casefold(),
                                             phone=person["phone"], notes=person["notes"])
                conv = (Conversation.select()
                        .where((Conversation.contact == contact.id) & (Conversation.status == "open"))
                        .order_by(Conversation.id.desc()).first())
                if conv is None:
                    conv = Conversation.create(tenant=TENANT, contact=contact.id, subject=body[:60])
                now = _now()
                Message.create(tenant=TENANT, conversation=conv.id, body=body, created_at=now)
                Conversation.update(message_count=Conversation.message_count + 1, last_message_at=now).where(
                    Conversation.id == conv.id).execute()

    def inbox_reads(self, pages: int, rng) -> int:
        """What the inbox view and the conversation view query and display (appliance/web/views/inbox.py)."""
        Contact, Conversation, Message = self.models
        chars = 0
        if not hasattr(self, "_conv_ids"):
            self._conv_ids = [c.id for c in Conversation.select(Conversation.id).where(Conversation.tenant == TENANT)]
        for _ in range(pages):
            # inbox: a keyset page of conversations, their contacts, the status counts
            rows = list(Conversation.select()
                        .where((Conversation.tenant == TENANT) & (Conversation.status == "open"))
                        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(26))[:25]
            contacts = {c.id: c for c in Contact.select().where(Contact.id.in_([r.contact_id for r in rows]))}
            counts = dict(Conversation.select(Conversation.status, fn.COUNT(Conversation.id))
                          .where(Conversation.tenant == TENANT).group_by(Conversation.status).tuples())
            for r in rows:
                c = contacts[r.contact_id]
                chars += len(c.name or c.email or c.phone) + len(r.subject or "")
            chars += sum(counts.values()) * 0
            # conversation view: the conversation, its contact card, its last 50 messages
            conv = Conversation.get_by_id(rng.choice(self._conv_ids))
            contact = Contact.get_by_id(conv.contact_id)
            chars += len(contact.name) + len(contact.email) + len(contact.phone) + len(contact.notes or "")
            chars += len(conv.subject or "")
            for m in (Message.select().where(Message.conversation == conv.id)
                      .order_by(Message.id.desc()).limit(50)):
                chars += len(m.body)
        return chars


class Clock:
    """Wall time and this process's CPU time: on a shared machine other jobs inflate wall
    time at random, CPU time measures what the work itself costs."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-crypto-"))
    keyring = KeyRing(MasterKey(generate_key(), "bench"), active_ttl=5.0)
    plain = Variant("plaintext", False, workdir / "plain.db", keyring)
    enc = Variant("encrypted", True, workdir / "enc.db", keyring)
    variants = (plain, enc)
    stream = make_stream(args.messages, args.contacts)
    chunk = 100
    rounds = []
    for r in range(args.rounds):
        clocks = {v.name: {"ingest": Clock(), "read": Clock()} for v in variants}
        for v in variants:
            v.reset()
            if hasattr(v, "_conv_ids"):
                del v._conv_ids
        # Interleave small chunks, alternating which variant goes first, so both
        # databases grow alike and machine-speed drift hits both equally.
        for i in range(0, len(stream), chunk):
            for v in (variants if (i // chunk) % 2 == 0 else variants[::-1]):
                if v.encrypted:
                    database_proxy.initialize(v.db)
                with clocks[v.name]["ingest"]:
                    v.ingest(stream[i:i + chunk])
        chars = {}
        for j in range(0, args.pages, 5):
            for v in (variants if (j // 5) % 2 == 0 else variants[::-1]):
                if v.encrypted:
                    database_proxy.initialize(v.db)
                with clocks[v.name]["read"]:
                    chars[v.name] = chars.get(v.name, 0) + v.inbox_reads(5, random.Random(j))
        assert chars["plaintext"] == chars["encrypted"], "both variants must read the same data"
        rounds.append(clocks)
        print(f"round {r + 1}: " + "  ".join(
            f"{name} ingest {c['ingest'].wall:.2f}s wall/{c['ingest'].cpu:.2f}s cpu, "
            f"inbox {c['read'].wall:.2f}s wall/{c['read'].cpu:.2f}s cpu" for name, c in clocks.items()), flush=True)

    n = args.messages
    print()
    print(f"messages {n}, contacts {args.contacts}, inbox pages {args.pages} (each also opens "
          f"one conversation), {args.rounds} rounds, SQLite WAL, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    for what, unit, count in (("ingest", "messages/s", n), ("read", "pages/s", args.pages)):
        for kind in ("cpu", "wall"):
            ratios = sorted(getattr(c["encrypted"][what], kind) / getattr(c["plaintext"][what], kind)
                            for c in rounds)
            best_p = min(getattr(c["plaintext"][what], kind) for c in rounds)
            best_e = min(getattr(c["encrypted"][what], kind) for c in rounds)
            print(f"{what:6} {kind:4}  plaintext {count / best_p:8,.0f} {unit}  encrypted {count / best_e:8,.0f} "
                  f"{unit}  cost ratio median {ratios[len(ratios) // 2]:.3f}x "
                  f"(rounds {', '.join(f'{x:.3f}' for x in ratios)}; goal <= 1.10x)")

    # Rotation: re-encrypt every row of the tenant on the encrypted database.
    enc.reset()
    database_proxy.initialize(enc.db)
    enc.ingest(stream)
    Contact, Conversation, Message = enc.models
    total_rows = Contact.select().count() + Conversation.select().count() + Message.select().count()
    keyring.active_ttl = 0.0  # one process here; the settle wait would only add idle time
    rotation = TenantRotation(TENANT, models=list(enc.models), batch_size=args.batch_size, keyring=keyring)
    rotation.start()
    started = time.perf_counter()
    rotation.run(settle=False)
    elapsed = time.perf_counter() - started
    res = rotation.result
    assert res.retired and res.rows_rewritten == total_rows, res
    print(f"rotate  {res.rows_rewritten:,} rows ({len(enc.models)} tables, batch {args.batch_size}) in "
          f"{elapsed:.2f}s = {res.rows_rewritten / elapsed:,.0f} rows/s (goal >= 20,000 rows/s), "
          f"including the final sweep and retiring the old key")
    enc.db.close()
    plain.db.close()


if __name__ == "__main__":
    main()
