"""VK on a loopback double: confirmation, the secret field, once per event_id, ``ok`` answers,
messages.send with random_id, and the Bots Long Poll in the worker."""

from __future__ import annotations

import json

import pytest

from appliance.web.jobs import run_round
from appliance.web.models.channels import SENT
from appliance.web.models.contact_center import Conversation, Message
from appliance.web.services.pollers import poll_job
from tests.channel_doubles import VkDouble
from tests.channel_support import drain, make_channel, outbox_row, reply


@pytest.fixture
def vk():
    with VkDouble() as double:
        yield double


def event(event_id="ev-1", text="hi", peer=42, secret=None):
    body = {"type": "message_new", "group_id": 1, "event_id": event_id, "object": {"message": {
        "id": 7, "date": 1735689600, "peer_id": peer, "from_id": peer, "text": text}, "client_info": {}}}
    if secret is not None:
        body["secret"] = secret
    return body


def _channel(app, world, double, **extra):
    return make_channel(app, world.tenants["A"], "vk", {
        "group_id": double.group_id, "access_token": double.token, "confirmation": "a1b2c3d4",
        "api_base_url": double.url + "/method", **extra})


def _post(client, channel, body):
    return client.post(f"/hooks/{channel.public_key}", data=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})


def test_confirmation_secret_and_once_per_event(app, client, world, vk):
    channel, generated = _channel(app, world, vk)
    secret = generated["secret"]
    confirm = _post(client, channel, {"type": "confirmation", "group_id": 1})
    assert confirm.status_code == 200 and confirm.get_data(as_text=True) == "a1b2c3d4"
    assert _post(client, channel, {"type": "confirmation", "group_id": 999}).status_code == 403
    assert _post(client, channel, event(secret="wrong")).status_code == 401
    assert _post(client, channel, event()).status_code == 401  # no secret at all
    first = _post(client, channel, event(text="Привет", secret=secret))
    assert first.status_code == 200 and first.get_data(as_text=True) == "ok"
    again = _post(client, channel, event(text="Привет", secret=secret))
    assert again.get_data(as_text=True) == "ok"  # VK retries until it reads ok
    conv = Conversation.get(Conversation.channel == channel.id)
    assert [m.body for m in conv.messages] == ["Привет"]


def test_reply_is_sent_once_with_random_id_through_faults(app, client, world, vk, clock):
    channel, generated = _channel(app, world, vk)
    _post(client, channel, event(secret=generated["secret"]))
    conv = Conversation.get(Conversation.channel == channel.id)
    vk.fail("429", path_contains="messages.send")  # VK's error 6, on HTTP 200
    vk.fail("502", path_contains="messages.send")
    message = reply(app, conv, "Здравствуйте")
    drain(app)
    assert outbox_row(message).state == "pending" and "Too many" in outbox_row(message).last_error
    clock.advance(minutes=1)
    drain(app)
    clock.advance(minutes=1)
    drain(app)
    row = outbox_row(message)
    assert row.state == SENT and row.attempts == 3
    assert [(s["peer_id"], s["text"]) for s in vk.sent] == [("42", "Здравствуйте")]


def test_long_poll_in_the_worker(app, world, vk):
    channel, _ = _channel(app, world, vk, receive="polling")
    app.extensions["appliance_instance"]["channels"]["poll_wait_seconds"] = 0
    vk.events = [event("ev-10", "polled"), event("ev-11", "polled too", peer=43)]
    assert not run_round(app, [poll_job])
    vk.events.append(event("ev-12", "later"))
    assert not run_round(app, [poll_job])
    bodies = sorted(m.body for m in Message.select().join(Conversation).where(Conversation.channel == channel.id))
    assert bodies == ["later", "polled", "polled too"]


def test_message_read_marks_the_replies_to_that_peer_read(app, client, world, vk):
    channel, generated = _channel(app, world, vk)
    _post(client, channel, event(secret=generated["secret"]))
    _post(client, channel, event("ev-2", peer=43, secret=generated["secret"]))
    convs = {c.contact_id: c for c in Conversation.select().where(Conversation.channel == channel.id)}
    first_conv, other_conv = sorted(convs.values(), key=lambda c: c.id)
    first, second = reply(app, first_conv, "one"), reply(app, first_conv, "two")
    other = reply(app, other_conv, "to peer 43")
    drain(app)
    ids = [int(outbox_row(m).external_id) for m in (first, second, other)]
    read = {"type": "message_read", "group_id": 1, "event_id": "ev-r1", "secret": generated["secret"],
            "object": {"from_id": 42, "peer_id": 42, "read_message_id": ids[0], "conversation_message_id": 1}}
    answer = _post(client, channel, read)
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok"
    assert [outbox_row(m).delivery_status for m in (first, second, other)] == ["read", None, None]
    read["object"]["read_message_id"] = ids[2]  # a later id read by 42 says nothing about peer 43
    _post(client, channel, read)
    assert [outbox_row(m).delivery_status for m in (first, second, other)] == ["read", "read", None]
