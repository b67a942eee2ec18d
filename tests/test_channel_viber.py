"""Viber REST bot API on a loopback double: X-Viber-Content-Signature over the raw body, once per
message_token, replies through faults exactly once, delivered/seen/failed receipts on the reply,
set_webhook on test connection, inbound files by their media URL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from appliance.web.channels.viber import EVENT_TYPES, signature
from appliance.web.models.channels import FAILED, SENT
from appliance.web.models.contact_center import Attachment, Conversation, Message
from appliance.web.models.live import LiveEvent
from tests.channel_doubles import ViberDouble
from tests.channel_support import drain, make_channel, outbox_row, reply
from tests.helpers import login

USER = "01234567890A="


@pytest.fixture
def viber():
    with ViberDouble() as double:
        yield double


def message_event(token=4912661846655238145, text="Is my card blocked?", sender=USER, **message):
    return {"event": "message", "timestamp": 1457764197627, "chat_hostname": "SN-376_", "message_token": token,
            "sender": {"id": sender, "name": "John McClane", "avatar": "http://avatar.example", "country": "UA",
                       "language": "en", "api_version": 1},
            "message": {"type": "text", "text": text, **message}, "silent": False}


def receipt(event, token, **extra):
    return {"event": event, "timestamp": 1457764197627, "chat_hostname": "SN-376_", "message_token": token,
            "user_id": USER, **extra}


def _channel(app, world, double, **extra):
    return make_channel(app, world.tenants["A"], "viber", {
        "auth_token": double.token, "sender_name": "Bank Support", "api_base_url": double.url + "/pa", **extra})


def _post(client, channel, body, token, raw=None):
    raw = raw if raw is not None else json.dumps(body).encode()
    return client.post(f"/hooks/{channel.public_key}", data=raw, headers={
        "Content-Type": "application/json", "X-Viber-Content-Signature": signature(token, raw)})


def _messages(channel):
    return Message.select().join(Conversation).where(Conversation.channel == channel.id)


def test_signed_callbacks_only_and_each_message_token_once(app, client, world, viber):
    channel, _ = _channel(app, world, viber)
    body = message_event()
    assert _post(client, channel, body, "not-the-auth-token").status_code == 401
    raw = json.dumps(body).encode()
    assert client.post(f"/hooks/{channel.public_key}", data=raw).status_code == 401  # unsigned
    respaced = json.dumps(body, indent=1).encode()  # the signature is over the raw bytes
    assert client.post(f"/hooks/{channel.public_key}", data=respaced, headers={
        "X-Viber-Content-Signature": signature(viber.token, raw)}).status_code == 401
    assert _messages(channel).count() == 0

    first = _post(client, channel, body, viber.token)
    assert first.status_code == 200 and first.get_json()["stored"] == 1
    assert _post(client, channel, body, viber.token).get_json()["stored"] == 0  # Viber re-delivers
    conv = Conversation.get(Conversation.channel == channel.id)
    assert [m.body for m in conv.messages] == ["Is my card blocked?"]
    assert conv.contact.name == "John McClane"
    # Viber's own check after set_webhook, and the conversation's start: answered 200, nothing stored.
    for event in ({"event": "webhook", "timestamp": 1457764197627, "message_token": 241256543215},
                  {"event": "conversation_started", "timestamp": 1457764197627, "message_token": 4912661846655238146,
                   "type": "open", "user": {"id": USER, "name": "John McClane"}, "subscribed": False},
                  {"event": "subscribed", "timestamp": 1457764197627, "message_token": 4912661846655238147,
                   "user": {"id": USER, "name": "John McClane"}}):
        assert _post(client, channel, event, viber.token).status_code == 200
    assert _messages(channel).count() == 1


def test_reply_reaches_viber_once_through_faults_then_receipts(app, client, world, viber, clock):
    channel, _ = _channel(app, world, viber)
    _post(client, channel, message_event(), viber.token)
    conv = Conversation.get(Conversation.channel == channel.id)
    viber.fail("429", path_contains="send_message")  # Viber's status 12 on HTTP 200
    viber.fail("503", path_contains="send_message")
    viber.fail("drop", path_contains="send_message")
    message = reply(app, conv, "No, it is active.", world.users[("A", "agent")])
    drain(app)
    row = outbox_row(message)
    assert row.state == "pending" and "tooManyRequests" in row.last_error
    for _ in range(3):
        clock.advance(minutes=5)
        drain(app)
    row = outbox_row(message)
    assert row.state == SENT and row.attempts == 4
    assert [(s["receiver"], s["text"], s["sender"]) for s in viber.sent] == [
        (USER, "No, it is active.", "Bank Support")]
    token = viber.sent[0]["message_token"]
    assert row.external_id == str(token) and row.delivery_status is None

    assert _post(client, channel, receipt("delivered", token), viber.token).status_code == 200
    assert outbox_row(message).delivery_status == "delivered"
    assert _post(client, channel, receipt("seen", token), viber.token).status_code == 200
    assert _post(client, channel, receipt("delivered", token), viber.token).status_code == 200  # late, out of order
    assert outbox_row(message).delivery_status == "read"
    # An open conversation page hears of each change (delivered, then read; the late one changed nothing).
    assert LiveEvent.select().where(LiveEvent.kind == "delivery", LiveEvent.message_id == message.id).count() == 2
    assert _post(client, channel, receipt("seen", 1), viber.token).status_code == 200  # not ours: ignored
    login(client, world.email("A", "agent"))
    page = client.get(f"/t/{world.tenants['A'].id}/conversations/{conv.id}").get_data(as_text=True)
    assert 'data-receipt="read"' in page and "Read (viber)" in page
    listed = client.get(f"/api/v1/conversations/{conv.id}/messages", headers=world.headers("A", "agent")).get_json()
    [delivery] = [m["delivery"] for m in listed["items"] if m["id"] == message.id]
    assert (delivery["state"], delivery["receipt"]) == ("sent", "read") and delivery["receipt_at"].endswith("Z")

    failed = reply(app, conv, "Anything else?")
    drain(app)
    failed_token = viber.sent[-1]["message_token"]
    _post(client, channel, receipt("failed", failed_token, desc="failure description"), viber.token)
    row = outbox_row(failed)
    assert (row.state, row.delivery_status) == (FAILED, "failed") and "failure description" in row.last_error
    page = client.get(f"/t/{world.tenants['A'].id}/conversations/{conv.id}").get_data(as_text=True)
    assert "failure description" in page and f"/messages/{failed.id}/retry" in page


def test_a_receipt_faster_than_the_sends_answer_is_held_until_then(app, client, world, viber, clock):
    from appliance.web.models.channels import ChannelReceipt
    from appliance.web.services.outbox import prune_receipts

    channel, _ = _channel(app, world, viber)
    _post(client, channel, message_event(), viber.token)
    conv = Conversation.get(Conversation.channel == channel.id)
    message = reply(app, conv, "Quick one")
    upcoming = viber._token + 1  # the token the double hands out next
    assert _post(client, channel, receipt("delivered", upcoming), viber.token).status_code == 200
    assert _post(client, channel, receipt("delivered", 42), viber.token).status_code == 200  # never ours
    assert ChannelReceipt.select().count() == 2
    drain(app)
    row = outbox_row(message)
    assert row.external_id == str(upcoming) and row.delivery_status == "delivered"
    assert [r.external_id for r in ChannelReceipt.select()] == ["42"]
    with app.app_context():
        assert prune_receipts() == 0
        clock.advance(days=1, seconds=1)
        assert prune_receipts() == 1


def test_unsubscribed_receiver_fails_at_once(app, client, world, viber, clock):
    channel, _ = _channel(app, world, viber)
    _post(client, channel, message_event(), viber.token)
    viber.subscribers = {"someone-else="}
    message = reply(app, Conversation.get(Conversation.channel == channel.id), "Hello?")
    drain(app)
    row = outbox_row(message)
    assert (row.state, row.attempts) == (FAILED, 1) and "receiverNotSubscribed" in row.last_error
    assert row.next_attempt_at <= clock.naive() + dt.timedelta(seconds=1) and viber.sent == []


def test_test_connection_registers_the_webhook(app, client, world, viber):
    headers = world.headers("A", "admin")
    made = client.post(f"/api/v1/tenants/{world.tenants['A'].id}/channels", headers=headers,
                       json={"kind": "viber", "name": "Viber desk"}).get_json()
    url = f"/api/v1/channels/{made['id']}/settings"
    form = client.get(url, headers=headers).get_json()
    assert [f["name"] for f in form["fields"]] == ["auth_token", "sender_name", "webhook_url", "api_base_url",
                                                   "rate_per_minute"]
    saved = client.patch(url, headers=headers, json={
        "auth_token": viber.token, "sender_name": "Bank Support", "api_base_url": viber.url + "/pa",
        "webhook_url": form["hook_url"]}).get_json()
    assert saved["missing"] == [] and saved["settings"]["auth_token"] == {"set": True}
    assert viber.token not in client.get(url, headers=headers).get_data(as_text=True)
    tested = client.post(f"/api/v1/channels/{made['id']}/test", headers=headers, json={}).get_json()
    assert tested == {"ok": True, "message": "Connected to Viber bot Bank Support. Callbacks registered with "
                                             "set_webhook."}
    assert viber.webhooks == [{"url": form["hook_url"], "event_types": EVENT_TYPES, "send_name": True,
                               "send_photo": False}]
    client.patch(url, headers=headers, json={"auth_token": "wrong-token"})
    failed = client.post(f"/api/v1/channels/{made['id']}/test", headers=headers, json={}).get_json()
    assert failed["ok"] is False and "invalidAuthToken" in failed["message"]

    tenant = world.tenants["A"]
    login(client, world.email("A", "admin"))
    assert '<option value="viber">Viber</option>' in client.get(f"/t/{tenant.id}/admin/channels").get_data(
        as_text=True)
    page = client.get(f"/t/{tenant.id}/admin/channels/{made['id']}/settings").get_data(as_text=True)
    assert 'name="auth_token"' in page and 'name="sender_name"' in page and form["hook_url"] in page
    assert "wrong-token" not in page and "invalidAuthToken" in page  # the last error, from the test above


def test_inbound_picture_is_fetched_from_its_media_url(app, client, world, viber):
    channel, _ = _channel(app, world, viber)
    viber.media["p1.jpg"] = b"\xff\xd8\xff\xe0 card photo"
    body = message_event(token=77, text="photo of the card", type="picture", media=viber.url + "/media/p1.jpg",
                         thumbnail=viber.url + "/media/thumb.jpg", file_name="card.jpg")
    assert _post(client, channel, body, viber.token).get_json()["stored"] == 1
    message = _messages(channel).get()
    assert message.body == "photo of the card"
    attachment = Attachment.get(Attachment.message == message.id)
    assert (attachment.filename, attachment.content_type, attachment.data) == (
        "card.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 card photo")
