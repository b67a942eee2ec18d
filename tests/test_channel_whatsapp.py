"""WhatsApp Cloud API on a loopback double: verify handshake, X-Hub-Signature-256 over the raw
body, once per wamid, replies through 429/5xx exactly once."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from appliance.web.channels.whatsapp import signature
from appliance.web.models.channels import SENT
from appliance.web.models.contact_center import Conversation, Message
from tests.channel_doubles import WhatsAppDouble
from tests.channel_support import drain, make_channel, outbox_row, reply

APP_SECRET = "meta-app-secret"


@pytest.fixture
def whatsapp():
    with WhatsAppDouble() as double:
        yield double


def payload(wamid="wamid.X", text="Does it come in another color?", sender="16505551234"):
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": sender}],
                      "messages": [{"from": sender, "id": wamid, "timestamp": "1749416383", "type": "text",
                                    "text": {"body": text}}]}}]}]}


def _channel(app, world, double):
    return make_channel(app, world.tenants["A"], "whatsapp", {
        "phone_number_id": double.phone_number_id, "access_token": double.token, "app_secret": APP_SECRET,
        "api_base_url": double.url})


def _post(client, channel, body: dict, secret=APP_SECRET, raw=None):
    raw = raw if raw is not None else json.dumps(body).encode()
    return client.post(f"/hooks/{channel.public_key}", data=raw, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": signature(secret, raw)})


def test_verify_handshake(app, client, world, whatsapp):
    channel, generated = _channel(app, world, whatsapp)
    url = f"/hooks/{channel.public_key}"
    ok = client.get(url, query_string={"hub.mode": "subscribe", "hub.verify_token": generated["verify_token"],
                                       "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "1158201444"
    wrong = client.get(url, query_string={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                          "hub.challenge": "1158201444"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.get_data(as_text=True)


def test_signed_posts_only_and_each_wamid_once(app, client, world, whatsapp):
    channel, _ = _channel(app, world, whatsapp)
    body = payload()
    assert _post(client, channel, body, secret="not-the-app-secret").status_code == 401
    raw = json.dumps(body).encode()
    unsigned = client.post(f"/hooks/{channel.public_key}", data=raw, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    # The signature is over the raw bytes: the same JSON re-serialised differently does not verify.
    respaced = json.dumps(body, indent=1).encode()
    assert client.post(f"/hooks/{channel.public_key}", data=respaced, headers={
        "X-Hub-Signature-256": signature(APP_SECRET, raw)}).status_code == 401
    assert Message.select().join(Conversation).where(Conversation.channel == channel.id).count() == 0

    assert _post(client, channel, body).get_json()["stored"] == 1
    assert _post(client, channel, body).get_json()["stored"] == 0  # Meta re-delivers
    conv = Conversation.get(Conversation.channel == channel.id)
    assert [m.body for m in conv.messages] == ["Does it come in another color?"]
    assert conv.contact.name == "Sheena Nelson" and conv.contact.phone == "+16505551234"
    statuses = {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {
        "statuses": [{"id": "wamid.out1", "status": "delivered"}]}}]}]}
    assert _post(client, channel, statuses).status_code == 200


def test_reply_reaches_whatsapp_once_through_faults(app, client, world, whatsapp, clock):
    channel, _ = _channel(app, world, whatsapp)
    _post(client, channel, payload())
    conv = Conversation.get(Conversation.channel == channel.id)
    whatsapp.fail("429", path_contains="/messages", retry_after=60)
    whatsapp.fail("503", path_contains="/messages")
    message = reply(app, conv, "Yes, in blue and red.")
    drain(app)
    assert outbox_row(message).next_attempt_at == clock.naive() + dt.timedelta(seconds=60)  # Retry-After: 60
    clock.advance(seconds=60)
    drain(app)
    clock.advance(minutes=5)
    drain(app)
    drain(app)
    row = outbox_row(message)
    assert row.state == SENT and row.attempts == 3 and row.external_id == "wamid.out1"
    assert whatsapp.sent == [{"to": "16505551234", "text": "Yes, in blue and red.", "id": "wamid.out1"}]


def _statuses(*items):
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA_ID", "changes": [{"field": "messages",
            "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881",
                                                                    "phone_number_id": "106540352242922"},
                      "statuses": [{"recipient_id": "16505551234", "timestamp": "1749416400", **i}
                                   for i in items]}}]}]}


def test_statuses_become_the_replys_receipts(app, client, world, whatsapp):
    channel, _ = _channel(app, world, whatsapp)
    _post(client, channel, payload())
    conv = Conversation.get(Conversation.channel == channel.id)
    first, second = reply(app, conv, "Yes, in blue."), reply(app, conv, "And in red.")
    drain(app)
    assert [outbox_row(m).external_id for m in (first, second)] == ["wamid.out1", "wamid.out2"]
    # Meta sends receipts out of order and repeats them: read is not taken back by a late delivered.
    assert _post(client, channel, _statuses({"id": "wamid.out1", "status": "sent"},
                                            {"id": "wamid.out1", "status": "read"})).status_code == 200
    _post(client, channel, _statuses({"id": "wamid.out1", "status": "delivered"}))
    assert outbox_row(first).delivery_status == "read" and outbox_row(first).delivery_at is not None
    _post(client, channel, _statuses({"id": "wamid.out2", "status": "failed", "errors": [{
        "code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
        "error_data": {"details": "More than 24 hours have passed since the customer last replied."}}]}))
    row = outbox_row(second)
    assert row.state == "failed" and row.delivery_status == "failed"
    assert "131047 Re-engagement message: More than 24 hours" in row.last_error
    assert _post(client, channel, _statuses({"id": "wamid.unknown", "status": "read"})).status_code == 200
    # A signed post is needed for receipts too.
    assert _post(client, channel, _statuses({"id": "wamid.out2", "status": "read"}), secret="x").status_code == 401
    assert outbox_row(second).delivery_status == "failed"


def test_an_agents_file_is_uploaded_then_sent_once_as_a_document(app, client, world, whatsapp, clock):
    from appliance.web.models.channels import FAILED
    from appliance.web.services import attachments

    channel, _ = _channel(app, world, whatsapp)
    _post(client, channel, payload())
    conv = Conversation.get(Conversation.channel == channel.id)
    agent = world.users[("A", "agent")]
    pdf = attachments.Upload("offer.pdf", "application/pdf", b"%PDF-1.4 offer")
    whatsapp.fail("503", path_contains="/messages")  # after the upload: the retry uploads again, sends once
    with app.app_context():
        message = attachments.add_message_with_files(conv, "out", "Our offer", [pdf], agent)
    drain(app)
    clock.advance(minutes=5)
    drain(app)
    assert outbox_row(message).state == SENT
    assert [(s["caption"], s["filename"], s["file"]) for s in whatsapp.sent] == [
        ("Our offer", "offer.pdf", ("offer.pdf", "application/pdf", b"%PDF-1.4 offer"))]

    csv = attachments.Upload("rates.csv", "text/csv", b"a;b\n")
    with app.app_context():
        two = attachments.add_message_with_files(conv, "out", "Both", [pdf, csv], agent)
    drain(app)
    row = outbox_row(two)
    assert row.state == FAILED and "one file per message" in row.last_error and len(whatsapp.sent) == 1


def test_an_inbound_document_is_fetched_by_its_media_id(app, client, world, whatsapp):
    from appliance.web.models.contact_center import Attachment

    channel, _ = _channel(app, world, whatsapp)
    whatsapp.media["1013859600285441"] = ("ignored.pdf", "application/pdf", b"%PDF-1.4 payslip")
    body = payload("wamid.DOC")
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="document", document={"id": "1013859600285441", "mime_type": "application/pdf",
                                              "filename": "../payslip.pdf", "caption": "my payslip",
                                              "sha256": "x"})
    assert _post(client, channel, body).status_code == 200
    stored = Message.select().join(Conversation).where(Conversation.channel == channel.id).get()
    assert stored.body == "my payslip"
    got = Attachment.get(Attachment.message == stored.id)
    assert (got.filename, got.content_type, got.data) == ("payslip.pdf", "application/pdf", b"%PDF-1.4 payslip")
    # The media URL needs the token too: without it the double refuses, as Meta does.
    assert any(call.startswith("/files/") for call in whatsapp.calls)
