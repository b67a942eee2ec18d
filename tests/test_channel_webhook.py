"""The generic webhook: signed timestamp + body, replay and staleness refused, once per delivery."""

from __future__ import annotations

import json
import re

from appliance.web.channels import ADAPTERS
from appliance.web.channels.webhook import signature, signed_headers
from appliance.web.models.audit import AuditEvent
from appliance.web.models.channels import InboundSeen
from appliance.web.models.contact_center import CHANNEL_KINDS, Channel, Message
from tests.helpers import login


def test_one_adapter_per_kind():
    assert set(ADAPTERS) == set(CHANNEL_KINDS)
    assert all(cls.kind == kind for kind, cls in ADAPTERS.items())


def _post(client, channel, raw, headers):
    return client.post(f"/hooks/{channel.public_key}", data=raw, headers={"Content-Type": "application/json"} | headers)


def test_same_signed_delivery_twice_is_stored_once(client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    raw = json.dumps({"phone": "+49 170 5551111", "body": "first and only"}).encode()
    headers = signed_headers(channel.secret, raw)
    first = _post(client, channel, raw, headers)
    assert first.status_code == 202, first.get_data(as_text=True)
    clock.advance(seconds=30)
    replay = _post(client, channel, raw, headers)
    assert replay.status_code == 409
    assert "received before" in replay.get_json()["message"]
    with client.application.app_context():
        bodies = [m.body for m in Message.select().where(Message.tenant == world.tenants["A"].id)]
        assert bodies.count("first and only") == 1
        assert InboundSeen.select().where(InboundSeen.channel == channel.id).count() == 1


def test_gateway_id_is_the_key_even_when_re_signed(client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    raw = json.dumps({"id": "gw-77", "phone": "+49 170 5552222", "body": "retried by the gateway"}).encode()
    assert _post(client, channel, raw, signed_headers(channel.secret, raw)).status_code == 202
    clock.advance(seconds=5)
    again = _post(client, channel, raw, signed_headers(channel.secret, raw))  # a fresh signature, same id
    assert again.status_code == 409


def test_stale_or_future_timestamp_is_refused(client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    raw = json.dumps({"phone": "+49 170 5553333", "body": "captured last week"}).encode()
    now = int(clock().timestamp())
    for stamp in (now - 301, now + 301):
        answer = _post(client, channel, raw, signed_headers(channel.secret, raw, now=stamp))
        assert answer.status_code == 401
        assert "X-Timestamp" in answer.get_json()["message"]
    assert _post(client, channel, raw, signed_headers(channel.secret, raw, now=now - 299)).status_code == 202


def test_signature_covers_the_timestamp(client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    raw = json.dumps({"phone": "+49 170 5554444", "body": "moved in time"}).encode()
    old = str(int(clock().timestamp()) - 1000)
    forged = {"X-Timestamp": str(int(clock().timestamp())), "X-Signature": signature(channel.secret, old, raw)}
    assert _post(client, channel, raw, forged).status_code == 401
    assert _post(client, channel, raw, {"X-Signature": signature(channel.secret, old, raw)}).status_code == 401


def test_signing_secret_shown_once_then_masked_and_rotated(app, client, world):
    tenant = world.tenants["A"]
    login(client, world.email("A", "admin"))
    page = client.get(f"/t/{tenant.id}/admin/channels").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    made = client.post(f"/t/{tenant.id}/admin/channels", data={"csrf_token": token, "name": "CRM gateway",
                                                               "kind": "webhook"})
    assert made.status_code == 201
    channel = Channel.get(Channel.tenant == tenant.id, Channel.name == "CRM gateway")
    assert f'data-signing-secret="{channel.id}">{channel.secret}<' in made.get_data(as_text=True)
    listing = client.get(f"/t/{tenant.id}/admin/channels").get_data(as_text=True)
    assert channel.secret not in listing  # masked afterwards: the last four characters only
    assert f'data-secret-hint="{channel.id}">…{channel.secret[-4:]}<' in listing

    old = channel.secret
    # A leaked secret: "stop the old one now" ends it at once, no grace.
    rotated = client.post(f"/t/{tenant.id}/admin/channels/{channel.id}/secret",
                          data={"csrf_token": token, "stop_old": "1"})
    new = Channel.get_by_id(channel.id).secret
    assert rotated.status_code == 200 and new != old and f">{new}<" in rotated.get_data(as_text=True)
    assert "the old one no longer verifies" in rotated.get_data(as_text=True)
    assert new not in client.get(f"/t/{tenant.id}/admin/channels").get_data(as_text=True)
    raw = json.dumps({"id": "after-rotation", "body": "hello"}).encode()
    assert _post(client, channel, raw, signed_headers(old, raw)).status_code == 401  # the old one stops at once
    assert _post(client, channel, raw, signed_headers(new, raw)).status_code == 202
    assert AuditEvent.select().where(AuditEvent.action == "channel.rotate_secret",
                                     AuditEvent.target == f"channel:{channel.id}").count() == 1

    # The API: the secret in the creating answer only, and from a rotation; other tenants get 404.
    headers = world.headers("A", "admin")
    api_made = client.post(f"/api/v1/tenants/{tenant.id}/channels", headers=headers,
                           json={"kind": "webhook", "name": "API gateway"}).get_json()
    assert api_made["signing_secret"] == Channel.get_by_id(api_made["id"]).secret
    shown = client.get(f"/api/v1/channels/{api_made['id']}", headers=headers).get_data(as_text=True)
    assert api_made["signing_secret"] not in shown
    url = f"/api/v1/channels/{api_made['id']}/secret"
    assert client.post(url, headers=world.headers("B", "admin"), json={}).status_code == 404
    assert client.post(url, headers=world.headers("A", "agent"), json={}).status_code == 403
    answer = client.post(url, headers=headers, json={}).get_json()
    assert answer["signing_secret"] == Channel.get_by_id(api_made["id"]).secret != api_made["signing_secret"]
    telegram = client.post(f"/api/v1/tenants/{tenant.id}/channels", headers=headers,
                           json={"kind": "telegram", "name": "TG"}).get_json()
    assert "signing_secret" not in telegram
    assert client.post(f"/api/v1/channels/{telegram['id']}/secret", headers=headers, json={}).status_code == 409
