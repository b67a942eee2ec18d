"""The generic webhook: signed timestamp + body, replay and staleness refused, once per delivery."""

from __future__ import annotations

import json

from appliance.web.channels import ADAPTERS
from appliance.web.channels.webhook import signature, signed_headers
from appliance.web.models.channels import InboundSeen
from appliance.web.models.contact_center import CHANNEL_KINDS, Message


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
