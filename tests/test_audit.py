"""The audit trail is a hash chain: concurrent writers never fork it, edits show."""

from __future__ import annotations

import threading

from appliance.web.models.audit import AuditEvent, record, verify_chain


def test_concurrent_writers_keep_one_chain(app):
    database = app.extensions["database"]
    errors = []

    def writer(n):
        try:
            with database.connection_context():
                for i in range(15):
                    record("test.concurrent", actor_id=n, seq=i)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert AuditEvent.select().where(AuditEvent.action == "test.concurrent").count() == 60
    assert verify_chain() == []
    hashes = [e.prev_hash for e in AuditEvent.select()]
    assert len(hashes) == len(set(hashes))  # no two events share a parent: no fork


def test_deleting_an_entry_breaks_the_chain(app):
    for i in range(5):
        record("test.delete", seq=i)
    victim = AuditEvent.select().order_by(AuditEvent.id).offset(2).first()
    victim.delete_instance()
    assert verify_chain() == [victim.id + 1]


def test_no_personal_data_in_audit_details(app, client, world):
    headers = world.headers("A", "admin")
    client.post(f"/api/v1/tenants/{world.tenants['A'].id}/members", headers=headers,
                json={"email": "secret.person@example.test", "name": "Secret Person", "password": "long-password-1",
                      "role": "agent"})
    text = " ".join(f"{e.action} {e.target} {e.details}" for e in AuditEvent.select())
    assert "member.add" in text
    assert "secret.person" not in text and "Secret Person" not in text
