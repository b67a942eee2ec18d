"""Must-show: personal data seeded through the API is nowhere in the database files or a dump.

Contacts, conversations and messages go in through the JSON API; attachments
have no API route yet, so one is stored through the model. Then the raw
SQLite file with its -wal (or a pg_dump of PostgreSQL) is scanned for every
seeded value in UTF-8, UTF-16 LE/BE, base64 and hex. A plaintext canary in a
column that is not encrypted proves the scan would have found a leak.
"""

from __future__ import annotations

import base64
from urllib.parse import urlparse

import pytest

from appliance.web.db import database_proxy

SECRETS = {
    "name": "Zoltan Quagmire-Oblonsky",
    "cyrillic": "Иван Петрович Сидоров",
    "email": "zoltan.quagmire.7431@example.org",
    "phone": "+44 20 7946 0958",
    "phone_e164": "+442079460958",
    "notes": "Passport 4509 771234, card 4111 1111 1111 1111",
    "subject": "Chargeback on card ending 8842",
    "body": "Meine IBAN ist DE89 3704 0044 0532 0130 00",
    "reply": "We blocked card 5500 0000 0000 0004 for you",
    "filename": "passport-scan-quagmire.pdf",
    "attachment": "%PDF-1.4 Zoltan Quagmire passport MRZ P<GBRQUAGMIRE",
}
CANARY = "Plaintext canary article title 93b1"


def encodings(value: str) -> dict[str, bytes]:
    raw = value.encode("utf-8")
    forms = {
        "utf-8": raw,
        "utf-16-le": value.encode("utf-16-le"),
        "utf-16-be": value.encode("utf-16-be"),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    # base64 of the value at each alignment, minus the edge characters that depend on neighbours.
    for shift in range(3):
        b64 = base64.b64encode(b"\0" * shift + raw)[4 if shift else 0:].rstrip(b"=")
        forms[f"base64+{shift}"] = b64[:-2]
    return forms


def scan(blob: bytes, values: dict[str, str]) -> list[str]:
    hits = []
    for label, value in values.items():
        for enc, needle in encodings(value).items():
            if needle in blob:
                hits.append(f"{label} as {enc}")
    return hits


def seed_through_api(client, world):
    tenant = world.tenants["A"]
    admin = world.headers("A", "admin")
    r = client.post(f"/api/v1/tenants/{tenant.id}/contacts", headers=admin, json={
        "name": SECRETS["name"], "email": SECRETS["email"], "phone": SECRETS["phone"], "notes": SECRETS["notes"]})
    assert r.status_code == 201, r.get_json()
    contact_id = r.get_json()["id"]
    r = client.post(f"/api/v1/tenants/{tenant.id}/contacts", headers=admin,
                    json={"name": SECRETS["cyrillic"]})
    assert r.status_code == 201
    channel = world.objects["A"]["channel"]
    r = client.post(f"/api/v1/tenants/{tenant.id}/conversations", headers=admin, json={
        "channel_id": channel.id, "contact_id": contact_id, "body": SECRETS["body"],
        "direction": "in", "subject": SECRETS["subject"]})
    assert r.status_code == 201, r.get_json()
    conv_id = r.get_json()["id"]
    r = client.post(f"/api/v1/conversations/{conv_id}/messages", headers=admin,
                    json={"body": SECRETS["reply"], "direction": "out"})
    assert r.status_code == 201, r.get_json()
    return tenant, contact_id, conv_id


def test_seeded_personal_data_is_not_in_the_database_files(request, app, client, world, instance):
    import sqlite3

    from appliance.web.models.contact_center import Article, Attachment, Message

    holder = None
    if instance.database_url.startswith("sqlite"):
        # An idle extra connection keeps the -wal file from being folded back and deleted
        # when the app's connections close, so the scan sees it as a live server's disk would.
        holder = sqlite3.connect(instance.home / "appliance.db")
        holder.execute("SELECT count(*) FROM sqlite_master").fetchone()
    tenant, contact_id, conv_id = seed_through_api(client, world)
    admin = world.headers("A", "admin")
    with app.app_context():
        database_proxy.connect(reuse_if_open=True)
        message = Message.select().where(Message.conversation == conv_id).first()
        Attachment.create(message=message, tenant=tenant.id, filename=SECRETS["filename"],
                          content_type="application/pdf", size=len(SECRETS["attachment"]),
                          data=SECRETS["attachment"].encode())
        Article.create(tenant=tenant.id, title=CANARY, body="not personal data")

    # The API hands the values back decrypted, and finds the contact by phone and e-mail.
    got = client.get(f"/api/v1/contacts/{contact_id}", headers=admin).get_json()
    assert (got["name"], got["email"], got["notes"]) == (SECRETS["name"], SECRETS["email"], SECRETS["notes"])
    bodies = [m["body"] for m in client.get(f"/api/v1/conversations/{conv_id}/messages",
                                            headers=admin).get_json()["items"]]
    assert bodies == [SECRETS["body"], SECRETS["reply"]]
    for query in ({"phone": "0044 (20) 7946-0958"}, {"email": "Zoltan.Quagmire.7431@EXAMPLE.org"}):
        found = client.get(f"/api/v1/tenants/{tenant.id}/contacts", headers=admin, query_string=query)
        assert [c["id"] for c in found.get_json()["items"]] == [contact_id], query

    if instance.database_url.startswith("sqlite"):
        db_path = instance.home / "appliance.db"
        blob = b"".join(p.read_bytes() for p in (db_path, db_path.with_name("appliance.db-wal"))
                        if p.exists())
        assert db_path.with_name("appliance.db-wal").stat().st_size > 0, "the scan must include the WAL"
        holder.close()
    else:
        server = request.getfixturevalue("pg_server")
        blob = server.dump(urlparse(instance.database_url).path.lstrip("/"))
        assert b"PostgreSQL database dump" in blob

    assert scan(blob, {"canary": CANARY}), "the scanner must find plaintext that is really there"
    assert scan(blob, SECRETS) == []


@pytest.mark.parametrize("value", list(SECRETS.values()))
def test_scanner_encodings_find_each_form(value):
    for enc, needle in encodings(value).items():
        assert scan(b"xx" + needle + b"yy", {"v": value}), enc
    assert scan(b"xx" + base64.b64encode(b"ab" + value.encode()) + b"yy", {"v": value})
