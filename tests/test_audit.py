"""The audit trail is a hash chain: concurrent writers never fork it, edits show."""

from __future__ import annotations

import threading

from appliance.web.models.audit import AuditEvent, record, verify_chain
from appliance.web.models.contact_center import Channel
from tests.helpers import csrf_token, login


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


def _channel_events(channel_id):
    return [(e.action, e.tenant_id, e.actor_id)
            for e in AuditEvent.select().where(AuditEvent.target == f"channel:{channel_id}").order_by(AuditEvent.id)]


def test_channels_made_through_the_api_are_audited(client, world):
    b = world.tenants["B"]
    headers = world.headers("B", "admin")
    made = client.post(f"/api/v1/tenants/{b.id}/channels", headers=headers, json={"kind": "email", "name": "Mail"})
    assert made.status_code == 201
    channel_id = made.get_json()["id"]
    assert client.patch(f"/api/v1/channels/{channel_id}", headers=headers,
                        json={"is_active": False}).status_code == 200
    actor = world.users[("B", "admin")].id  # an API token acts for the user who created it
    assert _channel_events(channel_id) == [("channel.create", b.id, actor), ("channel.update", b.id, actor)]
    assert verify_chain() == []


def test_channels_made_in_the_ui_leave_the_same_events(app, world):
    client = app.test_client()
    assert login(client, world.email("B", "admin")).status_code == 302
    b = world.tenants["B"]
    token = csrf_token(client, f"/t/{b.id}/inbox")
    made = client.post(f"/t/{b.id}/admin/channels", data={"name": "Mail", "kind": "email", "csrf_token": token})
    assert made.status_code == 302
    channel = Channel.get(Channel.name == "Mail", Channel.tenant == b.id)
    assert client.post(f"/t/{b.id}/admin/channels/{channel.id}", data={"csrf_token": token}).status_code == 302
    actor = world.users[("B", "admin")].id
    assert _channel_events(channel.id) == [("channel.create", b.id, actor), ("channel.update", b.id, actor)]
