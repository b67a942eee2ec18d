"""VK on a loopback double: confirmation, the secret field, once per event_id, ``ok`` answers,
messages.send with random_id, the Bots Long Poll in the worker, and files both ways (inbound
photo and doc attachments; an agent's files through the doc upload server and docs.save)."""

from __future__ import annotations

import json
import secrets

import pytest

from appliance.web.jobs import run_round
from appliance.web.models.channels import SENT
from appliance.web.models.contact_center import Attachment, Conversation, Message
from appliance.web.services.pollers import poll_job
from tests.channel_doubles import VkDouble
from tests.channel_support import drain, make_channel, outbox_row, reply
from tests.helpers import raw_database


@pytest.fixture
def vk():
    with VkDouble() as double:
        yield double


def event(event_id="ev-1", text="hi", peer=42, secret=None, attachments=None):
    body = {"type": "message_new", "group_id": 1, "event_id": event_id, "object": {"message": {
        "id": 7, "date": 1735689600, "peer_id": peer, "from_id": peer, "text": text}, "client_info": {}}}
    if attachments is not None:
        body["object"]["message"]["attachments"] = attachments
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


def _photo(vk, sizes):
    """A photo attachment as VK sends it: one URL per size (type letter, width, height)."""
    return {"type": "photo", "photo": {"id": 457239017, "owner_id": 42, "date": 1735689600, "sizes": [
        {"type": kind, "width": w, "height": h, "url": vk.file_url(name)} for name, kind, w, h in sizes]}}


def _doc(vk, name, title, ext, size):
    return {"type": "doc", "doc": {"id": 6190, "owner_id": 42, "title": title, "size": size, "ext": ext,
                                   "date": 1735689600, "type": 1, "url": vk.file_url(name)}}


def test_inbound_photo_and_doc_are_stored_encrypted_and_oversized_ones_named(request, app, client, world, vk,
                                                                              instance):
    app.extensions["appliance_instance"].settings["attachment_max_bytes"] = 1000
    channel, generated = _channel(app, world, vk)
    large = b"\xff\xd8\xffLARGE-PHOTO-" + secrets.token_hex(16).encode()
    pdf = b"%PDF-1.4 VK-STATEMENT-" + secrets.token_hex(16).encode()
    vk.files.update({"p-small": b"\xff\xd8\xffsmall", "p-large": large, "p-medium": b"\xff\xd8\xffmedium",
                     "statement": pdf, "big": b"x" * 5000, "liar": b"y" * 5000})
    attachments = [
        _photo(vk, [("p-small", "s", 75, 56), ("p-large", "w", 2560, 1920), ("p-medium", "x", 604, 453)]),
        _doc(vk, "statement", "statement", "pdf", len(pdf)),
        _doc(vk, "big", "scan.pdf", "pdf", 5000),  # declared over the limit: not even fetched
        _doc(vk, "liar", "archive.pdf", "pdf", 10),  # declares little, sends more: the read stops at the limit
    ]
    with raw_database(request, instance) as read:
        answer = _post(client, channel, event(text="my documents", secret=generated["secret"],
                                              attachments=attachments))
        assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok"
        message = Message.select().join(Conversation).where(Conversation.channel == channel.id).get()
        got = {a.filename: (a.content_type, a.data)
               for a in Attachment.select().where(Attachment.message == message.id)}
        blob = read()
    assert got == {"photo.jpg": ("image/jpeg", large), "statement.pdf": ("application/pdf", pdf)}
    assert message.body.startswith("my documents\n\n")
    assert "[not stored: scan.pdf: 5000 bytes is over the limit of 1000 bytes per file" in message.body
    assert "[not stored: archive.pdf: the file is over the limit of 1000 bytes per file" in message.body
    assert "/files/big" not in vk.calls and "/files/p-small" not in vk.calls
    assert b"my documents" not in blob and large not in blob and pdf not in blob  # sealed at rest
    assert str(channel.public_key).encode() in blob  # the scan reads real data


def test_an_agents_files_go_up_as_docs_and_out_once_with_the_text_through_faults(app, client, world, vk, clock):
    from appliance.web.services import attachments

    channel, generated = _channel(app, world, vk)
    _post(client, channel, event(secret=generated["secret"]))
    conv = Conversation.get(Conversation.channel == channel.id)
    agent = world.users[("A", "agent")]
    form = attachments.Upload("form.pdf", "application/pdf", b"%PDF-1.4 form " + secrets.token_bytes(32))
    vk.fail("502", path_contains="/upload/")  # the upload server fails once: the retry starts over
    with app.app_context():
        one = attachments.add_message_with_files(conv, "out", "Here is the form", [form], agent)
    drain(app)
    row = outbox_row(one)
    assert (row.state, row.attempts) == ("pending", 1) and "502" in row.last_error and vk.sent == []
    clock.advance(minutes=5)
    drain(app)
    assert outbox_row(one).state == SENT
    assert [(s["peer_id"], s["text"], s["files"]) for s in vk.sent] == [
        ("42", "Here is the form", [("form.pdf", "application/pdf", form.data)])]
    methods = [c.rsplit("/", 1)[-1] for c in vk.calls if c.startswith("/method/") or c.startswith("/upload/")]
    assert methods[-4:] == ["docs.getMessagesUploadServer", methods[-3], "docs.save", "messages.send"]
    assert vk.calls[-3].startswith("/upload/")

    # Two files in one send; the send itself fails (500) after the uploads: the retry uploads
    # again and sends once (with the same random_id, so a lost answer could not double it either).
    rates = attachments.Upload("rates.csv", "text/csv", b"a;b\n1;2\n")
    with app.app_context():
        two = attachments.add_message_with_files(conv, "out", "Both", [form, rates], agent)
    vk.fail("500", path_contains="messages.send")
    drain(app)
    assert outbox_row(two).attempts == 1 and len(vk.sent) == 1
    clock.advance(minutes=5)
    drain(app)
    assert outbox_row(two).state == SENT
    assert [(s["text"], [f[0] for f in s["files"]]) for s in vk.sent] == [
        ("Here is the form", ["form.pdf"]), ("Both", ["form.pdf", "rates.csv"])]
