"""The outbox: bounded tries then failed with the reason on the message and a retry action;
per-channel rate limit; replies on channels that deliver nothing are not queued; one host sends."""

from __future__ import annotations

import re
import threading

import pytest

from appliance.web.models.channels import FAILED, PENDING, SENT, OutboxMessage
from appliance.web.models.contact_center import Conversation
from appliance.web.services import outbox
from tests.channel_doubles import TelegramDouble
from tests.channel_support import drain, make_channel, outbox_row, reply
from tests.helpers import login


@pytest.fixture
def telegram():
    with TelegramDouble() as double:
        yield double


def _conversation(app, client, world, telegram, chat=42, update_id=1, **settings):
    channel, generated = make_channel(app, world.tenants["A"], "telegram",
                                      {"bot_token": telegram.token, "api_base_url": telegram.url, **settings})
    body = {"update_id": update_id, "message": {"message_id": 1, "from": {"id": chat, "first_name": "Ivan"},
                                                "chat": {"id": chat, "type": "private"}, "date": 1, "text": "hi"}}
    answer = client.post(f"/hooks/{channel.public_key}", json=body,
                         headers={"X-Telegram-Bot-Api-Secret-Token": generated["secret_token"]})
    assert answer.status_code == 200
    return channel, Conversation.get(Conversation.channel == channel.id)


def _drain_on_hosts(app, hosts: int, batch: int | None = None):
    """``hosts`` app hosts (threads with their own connections) draining the outbox at once until it is empty."""
    errors = []

    def host():
        try:
            with app.app_context(), app.extensions["database"].connection_context():
                while outbox.drain(limit=batch)["sent"]:
                    pass
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=host) for _ in range(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_bounded_tries_then_failed_shown_with_retry(app, client, world, telegram, clock):
    app.extensions["appliance_instance"]["channels"]["outbox_max_attempts"] = 3
    channel, conv = _conversation(app, client, world, telegram)
    telegram.fail("500", path_contains="sendMessage", times=3)
    message = reply(app, conv, "You will get this eventually")
    for _ in range(3):
        drain(app)
        clock.advance(hours=1)
    row = outbox_row(message)
    assert row.state == FAILED and row.attempts == 3 and "Gave up after 3 tries" in row.last_error
    assert telegram.sent == []

    login(client, world.email("A", "agent"))
    page = client.get(f"/t/{world.tenants['A'].id}/conversations/{conv.id}").get_data(as_text=True)
    assert 'data-delivery="failed"' in page and "Gave up after 3 tries" in page
    settings = client.get(f"/t/{world.tenants['A'].id}/admin/channels/{channel.id}/settings")
    assert settings.status_code == 403  # agents do not see channel settings
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    retry_url = f"/t/{world.tenants['A'].id}/conversations/{conv.id}/messages/{message.id}/retry"
    assert client.post(retry_url, data={"csrf_token": token}).status_code == 302
    assert outbox_row(message).state == PENDING
    drain(app)
    assert outbox_row(message).state == SENT
    assert telegram.sent == [{"chat_id": "42", "text": "You will get this eventually"}]
    again = client.post(retry_url, data={"csrf_token": token})
    assert again.status_code == 409  # only a failed delivery can be retried
    api_url = f"/api/v1/messages/{message.id}/retry"
    assert client.post(api_url, headers=world.headers("A", "agent"), json={}).status_code == 409
    assert client.post(api_url, headers=world.headers("B", "admin"), json={}).status_code == 404


def test_api_retry_of_a_failed_reply(app, client, world, telegram):
    _channel, conv = _conversation(app, client, world, telegram)
    telegram.fail("400", path_contains="sendMessage")
    message = reply(app, conv, "second chance")
    drain(app)
    assert outbox_row(message).state == FAILED
    answer = client.post(f"/api/v1/messages/{message.id}/retry", headers=world.headers("A", "agent"), json={})
    assert answer.status_code == 200 and answer.get_json()["delivery"] == {"state": "pending", "attempts": 0}
    drain(app)
    assert telegram.sent == [{"chat_id": "42", "text": "second chance"}]


def test_permanent_refusal_fails_at_once(app, client, world, telegram):
    channel, conv = _conversation(app, client, world, telegram)
    from appliance.web.channels import config as channel_config

    with app.app_context():
        channel_config.update_settings(channel, {"bot_token": "999:revoked"})
    message = reply(app, conv, "lost")
    drain(app)
    row = outbox_row(message)
    assert row.state == FAILED and row.attempts == 1 and "401" in row.last_error
    with app.app_context():
        assert "401" in channel_config.status(channel)["last_error"]


def test_rate_limit_per_channel(app, client, world, telegram, clock):
    _channel, conv = _conversation(app, client, world, telegram, rate_per_minute="2")
    messages = [reply(app, conv, f"part {i}") for i in range(5)]
    drain(app)
    assert [s["text"] for s in telegram.sent] == ["part 0", "part 1"]
    assert outbox_row(messages[2]).state == PENDING
    clock.advance(seconds=61)
    drain(app)
    assert len(telegram.sent) == 4
    clock.advance(seconds=61)
    drain(app)
    assert [s["text"] for s in telegram.sent] == [f"part {i}" for i in range(5)]


def test_replies_that_go_nowhere_are_not_queued(app, world):
    webchat_conv = world.objects["A"]["conversation"]  # the widget reads web-chat replies itself
    message = reply(app, webchat_conv, "read by the widget")
    assert OutboxMessage.get_or_none(OutboxMessage.message == message.id) is None


def test_two_hosts_draining_at_once_send_each_reply_once(app, client, world, telegram, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("several app hosts means PostgreSQL")
    _channel, conv = _conversation(app, client, world, telegram)
    for i in range(30):
        reply(app, conv, f"reply {i}")
    _drain_on_hosts(app, 4)
    texts = [s["text"] for s in telegram.sent]
    assert sorted(texts) == sorted(f"reply {i}" for i in range(30)) and len(texts) == len(set(texts))


def test_a_conversations_replies_leave_in_order(app, client, world, telegram, clock):
    _channel, conv = _conversation(app, client, world, telegram)
    _other_channel, other = _conversation(app, client, world, telegram, chat=43, update_id=2)
    telegram.fail("500", path_contains="sendMessage")
    first = reply(app, conv, "first")
    second = reply(app, conv, "second")
    elsewhere = reply(app, other, "another conversation")
    drain(app)
    # "first" backs off; "second" waits behind it; the other conversation is not held back.
    assert [s["text"] for s in telegram.sent] == ["another conversation"]
    assert (outbox_row(first).state, outbox_row(second).state, outbox_row(elsewhere).state) == (
        PENDING, PENDING, SENT)
    assert outbox_row(second).attempts == 0
    clock.advance(minutes=5)
    drain(app)
    assert [s["text"] for s in telegram.sent] == ["another conversation", "first", "second"]
    # A failed reply holds nothing back (its retry sends it after the rest).
    telegram.fail("400", path_contains="sendMessage")
    lost, after = reply(app, conv, "lost"), reply(app, conv, "after")
    drain(app)
    assert outbox_row(lost).state == FAILED and outbox_row(after).state == SENT


def test_several_hosts_keep_each_conversations_order(app, client, world, telegram, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("several app hosts means PostgreSQL")
    chats = [42, 43, 44]
    convs = [_conversation(app, client, world, telegram, chat=chat, update_id=i + 1)[1]
             for i, chat in enumerate(chats)]
    for i in range(8):
        for conv in convs:
            reply(app, conv, f"{conv.id}:{i}")
    telegram.latency = 0.02  # sends overlap across the hosts
    _drain_on_hosts(app, 4, batch=3)
    assert len(telegram.sent) == 24
    for conv, chat in zip(convs, chats, strict=True):
        texts = [s["text"] for s in telegram.sent if s["chat_id"] == str(chat)]
        assert texts == [f"{conv.id}:{i}" for i in range(8)]
