"""Telegram on a loopback double: the secret-token header, once per update_id, replies through
faults exactly once, getUpdates long polling in the worker, files by getFile."""

from __future__ import annotations

import json

import pytest

from appliance.web.channels.ingest import recipient_for
from appliance.web.jobs import run_round
from appliance.web.models.channels import SENT, ChannelConfig
from appliance.web.models.contact_center import Attachment, Conversation, Message
from appliance.web.services.pollers import poll_job
from tests.channel_doubles import TelegramDouble
from tests.channel_support import drain, make_channel, outbox_row, reply


@pytest.fixture
def telegram():
    with TelegramDouble() as double:
        yield double


def update(update_id, text="hi", chat=42, **message):
    return {"update_id": update_id, "message": {"message_id": update_id + 4, "from": {
        "id": chat, "is_bot": False, "first_name": "Ivan"}, "chat": {"id": chat, "type": "private"},
        "date": 1735689600, "text": text, **message}}


def _post(client, channel, body, token):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = token
    return client.post(f"/hooks/{channel.public_key}", data=json.dumps(body).encode(), headers=headers)


def test_webhook_update_is_stored_once_and_wrong_token_refused(app, client, world, telegram):
    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url})
    secret = generated["secret_token"]
    assert _post(client, channel, update(1), None).status_code == 401
    assert _post(client, channel, update(1), "wrong-token").status_code == 401
    assert Message.select().join(Conversation).where(Conversation.channel == channel.id).count() == 0

    first = _post(client, channel, update(1, "Does it come in blue?"), secret)
    assert first.status_code == 200 and first.get_json()["stored"] == 1
    again = _post(client, channel, update(1, "Does it come in blue?"), secret)  # Telegram re-delivers
    assert again.status_code == 200 and again.get_json()["stored"] == 0
    conv = Conversation.get(Conversation.channel == channel.id)
    assert [m.body for m in conv.messages] == ["Does it come in blue?"]
    assert conv.contact.name == "Ivan"
    with app.app_context():
        assert recipient_for(conv) == "42"
    _post(client, channel, update(2, "and in red?"), secret)
    assert [m.body for m in Conversation.get_by_id(conv.id).messages] == ["Does it come in blue?", "and in red?"]
    assert ChannelConfig.get(ChannelConfig.channel == channel.id).last_inbound_at is not None


def test_reply_reaches_telegram_exactly_once_through_faults(app, client, world, telegram, clock):
    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url})
    _post(client, channel, update(7, "help"), generated["secret_token"])
    conv = Conversation.get(Conversation.channel == channel.id)
    telegram.fail("429", path_contains="sendMessage", retry_after=30)
    telegram.fail("500", path_contains="sendMessage")
    telegram.fail("drop", path_contains="sendMessage")
    message = reply(app, conv, "Here is how", world.users[("A", "agent")])

    drain(app)  # 429: wait what Telegram says (30 s), not just the backoff
    row = outbox_row(message)
    assert (row.state, row.attempts) == ("pending", 1) and "429" in row.last_error
    clock.advance(seconds=29)
    drain(app)
    assert outbox_row(message).attempts == 1  # not due yet
    clock.advance(seconds=1)
    drain(app)  # 500
    assert outbox_row(message).attempts == 2
    clock.advance(minutes=5)
    drain(app)  # connection dropped
    assert outbox_row(message).attempts == 3
    clock.advance(minutes=5)
    drain(app)
    drain(app)
    row = outbox_row(message)
    assert row.state == SENT and row.attempts == 4 and row.external_id
    assert telegram.sent == [{"chat_id": "42", "text": "Here is how"}]


def test_long_polling_in_the_worker(app, world, telegram, clock):
    channel, _ = make_channel(app, world.tenants["A"], "telegram",
                              {"bot_token": telegram.token, "api_base_url": telegram.url, "receive": "polling"})
    app.extensions["appliance_instance"]["channels"]["poll_wait_seconds"] = 0
    telegram.updates = [update(10, "polled one"), update(11, "polled two", chat=43)]
    assert not run_round(app, [poll_job])
    assert not run_round(app, [poll_job])  # the same updates again (the offset was not confirmed yet)
    bodies = sorted(m.body for m in Message.select().join(Conversation).where(Conversation.channel == channel.id))
    assert bodies == ["polled one", "polled two"]
    state = json.loads(ChannelConfig.get(ChannelConfig.channel == channel.id).poll_state)
    assert state["offset"] == 12
    getupdates = [c for c in telegram.calls if c.endswith("getUpdates")]
    assert len(getupdates) == 2


def test_polling_channel_refuses_webhook_posts(app, client, world, telegram):
    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url,
                                       "receive": "polling"})
    assert _post(client, channel, update(1), generated["secret_token"]).status_code == 409


def test_inbound_document_is_fetched_with_getfile(app, client, world, telegram):
    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url})
    telegram.files["F1"] = b"%PDF-1.4 statement"
    body = update(20, "", document={"file_id": "F1", "file_name": "statement.pdf", "mime_type": "application/pdf"})
    del body["message"]["text"]
    body["message"]["caption"] = "my statement"
    assert _post(client, channel, body, generated["secret_token"]).get_json()["stored"] == 1
    message = Message.select().join(Conversation).where(Conversation.channel == channel.id).get()
    assert message.body == "my statement"
    attachment = Attachment.get(Attachment.message == message.id)
    assert (attachment.filename, attachment.content_type, attachment.data) == (
        "statement.pdf", "application/pdf", b"%PDF-1.4 statement")


def test_an_agents_files_go_out_in_one_upload_with_the_text_as_caption(app, client, world, telegram, clock):
    from appliance.web.models.channels import FAILED
    from appliance.web.services import attachments

    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url})
    _post(client, channel, update(30, "send me the forms"), generated["secret_token"])
    conv = Conversation.get(Conversation.channel == channel.id)
    agent = world.users[("A", "agent")]
    pdf = attachments.Upload("form.pdf", "application/pdf", b"%PDF-1.4 form")
    telegram.fail("500", path_contains="sendDocument")
    with app.app_context():
        one = attachments.add_message_with_files(conv, "out", "Here is the form", [pdf], agent)
    drain(app)
    assert outbox_row(one).attempts == 1 and telegram.sent == []
    clock.advance(minutes=5)
    drain(app)
    assert outbox_row(one).state == SENT
    assert telegram.sent == [{"chat_id": "42", "caption": "Here is the form", "filename": "form.pdf",
                              "content_type": "application/pdf", "data": b"%PDF-1.4 form"}]  # once, through a 500

    csv = attachments.Upload("rates.csv", "text/csv", b"a;b\n1;2\n")
    with app.app_context():
        two = attachments.add_message_with_files(conv, "out", "Both of them", [pdf, csv], agent)
        long = attachments.add_message_with_files(conv, "out", "x" * 1025, [csv], agent)
    drain(app)
    assert outbox_row(two).state == SENT
    assert [(s["caption"], s["filename"]) for s in telegram.sent[1:]] == [("Both of them", "form.pdf"),
                                                                          ("", "rates.csv")]
    row = outbox_row(long)
    assert row.state == FAILED and "caption limit" in row.last_error and len(telegram.sent) == 3


def test_on_postgresql_a_second_host_skips_a_channel_another_host_is_polling(app, world, telegram, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite is one host by construction: there is no second host to keep out")
    import psycopg2

    channel, _ = make_channel(app, world.tenants["A"], "telegram",
                              {"bot_token": telegram.token, "api_base_url": telegram.url, "receive": "polling"})
    app.extensions["appliance_instance"]["channels"]["poll_wait_seconds"] = 0
    telegram.updates = [update(40, "polled once")]
    other = psycopg2.connect(db_url)  # another app host's worker, in the middle of this channel's poll
    try:
        with other.cursor() as cur:
            cur.execute('SELECT id FROM "channel_config" WHERE "channel_id" = %s FOR UPDATE', (channel.id,))
            assert cur.fetchone()
        assert not run_round(app, [poll_job])
        assert not [c for c in telegram.calls if c.endswith("getUpdates")]  # skipped, not waiting
        other.rollback()
        assert not run_round(app, [poll_job])
    finally:
        other.close()
    assert [c for c in telegram.calls if c.endswith("getUpdates")] != []
    assert [m.body for m in Message.select().join(Conversation).where(Conversation.channel == channel.id)] == [
        "polled once"]
