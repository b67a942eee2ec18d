"""Throttling by address and by account, with backoff, counted in the database: a stranger
cannot lock the owner out, one address cannot spray accounts, and the widget and webhooks
have per-address (and per-channel) limits of the app's own, so the embedded default without
a reverse proxy is covered too."""

from __future__ import annotations

import json

from appliance.web.channels.webhook import signed_headers
from appliance.web.models.security import ThrottleEvent
from tests.helpers import PASSWORD, csrf_token

ATTACKER, OWNER = "203.0.113.66", "198.51.100.7"


def _attempt(client, email, password, address):
    env = {"REMOTE_ADDR": address}
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                       environ_base=env)


def _limits(app):
    return app.extensions["appliance_instance"].settings["throttle"]


def test_the_owner_still_gets_in_while_a_stranger_is_locked_out(app, client, world, clock):
    email = world.email("A", "agent")
    for _ in range(5):
        assert _attempt(app.test_client(), email, "wrong-password-x", ATTACKER).status_code == 401
    assert _attempt(app.test_client(), email, PASSWORD, ATTACKER).status_code == 429  # even the right one
    assert _attempt(app.test_client(), email, PASSWORD, OWNER).status_code == 302
    with app.app_context():  # counted in the database, and never by the address or e-mail itself
        keys = {e.key for e in ThrottleEvent.select()}
        assert keys and not any(ATTACKER in k or email in k for k in keys)


def test_each_failure_after_the_lock_doubles_it(app, world, clock):
    email = world.email("A", "agent")
    window = app.extensions["appliance_instance"]["login_throttle_window_seconds"]
    for _ in range(5):
        _attempt(app.test_client(), email, "wrong-password-x", ATTACKER)
    clock.advance(seconds=window + 1)
    assert _attempt(app.test_client(), email, "wrong-password-x", ATTACKER).status_code == 401
    clock.advance(seconds=window + 1)
    assert _attempt(app.test_client(), email, PASSWORD, ATTACKER).status_code == 429  # now 2 x window
    clock.advance(seconds=window)
    assert _attempt(app.test_client(), email, PASSWORD, ATTACKER).status_code == 302


def test_one_address_cannot_spray_many_accounts(app, world):
    _limits(app)["login_per_address"] = 4
    emails = [world.email(key, role) for key in ("A", "B", "A1", "B1") for role in ("agent", "admin")]
    for email in emails[:4]:
        assert _attempt(app.test_client(), email, "wrong-password-x", ATTACKER).status_code == 401
    assert _attempt(app.test_client(), emails[5], PASSWORD, ATTACKER).status_code == 429
    assert _attempt(app.test_client(), emails[5], PASSWORD, OWNER).status_code == 302


def test_a_distributed_guess_locks_the_account_but_not_a_totp_user(app, world):
    _limits(app)["login_per_account"] = 3
    email = world.email("B", "agent")
    for n in range(3):
        _attempt(app.test_client(), email, "wrong-password-x", f"192.0.2.{n + 1}")
    assert _attempt(app.test_client(), email, PASSWORD, OWNER).status_code == 401  # no hint it was right


def _widget(client, world, address, key="A"):
    channel = world.objects[key]["channel"]
    return client.post(f"/widget/{channel.public_key}/messages", json={"body": "hello", "name": "Visitor"},
                       environ_base={"REMOTE_ADDR": address})


def test_new_widget_conversations_are_limited_per_address_and_per_channel(app, client, world, clock):
    _limits(app).update(widget_conversations_per_address=2, widget_conversations_per_channel=3)
    assert _widget(client, world, ATTACKER).status_code == 201
    assert _widget(client, world, ATTACKER).status_code == 201
    refused = _widget(client, world, ATTACKER)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "address" in refused.get_json()["message"]
    assert _widget(client, world, OWNER).status_code == 201
    assert _widget(client, world, "192.0.2.9").status_code == 429  # the channel's own limit
    assert _widget(client, world, OWNER, key="B").status_code == 201  # other channels are not affected
    clock.advance(seconds=_limits(app)["widget_window_seconds"] + 1)
    assert _widget(client, world, ATTACKER).status_code == 201


def test_webhooks_are_limited_per_address(app, client, world):
    _limits(app)["webhook_requests_per_address"] = 3
    channel = world.objects["A"]["shared_channel"]

    def post(n, address):
        raw = json.dumps({"body": f"hi {n}", "email": "x@example.test"}).encode()
        headers = {"Content-Type": "application/json", **signed_headers(channel.secret, raw)}
        return client.post(f"/hooks/{channel.public_key}", data=raw, headers=headers,
                           environ_base={"REMOTE_ADDR": address}).status_code

    assert [post(n, ATTACKER) for n in range(4)] == [202, 202, 202, 429]
    assert post(99, OWNER) == 202


def test_behind_a_trusted_proxy_the_forwarded_address_counts(app, world):
    app.extensions["appliance_instance"].settings["trusted_proxy_hops"] = 1
    email = world.email("A", "agent")
    for _ in range(5):
        client = app.test_client()
        token = csrf_token(client)
        client.post("/login", data={"email": email, "password": "wrong-password-x", "csrf_token": token},
                    headers={"X-Forwarded-For": f"spoofed, {ATTACKER}"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    client = app.test_client()
    token = csrf_token(client)
    ok = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                     headers={"X-Forwarded-For": OWNER}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert ok.status_code == 302


def test_a_process_writes_its_webhook_counts_at_least_once_a_second(app, client, world, clock):
    """Admitted events are counted in the process and written at the next sync, so other
    hosts see them at most a second late, and only the database's count refuses."""
    _limits(app)["webhook_requests_per_address"] = 100
    channel = world.objects["A"]["shared_channel"]

    def post(n):
        raw = json.dumps({"body": f"hi {n}", "email": "x@example.test"}).encode()
        headers = {"Content-Type": "application/json", **signed_headers(channel.secret, raw)}
        return client.post(f"/hooks/{channel.public_key}", data=raw, headers=headers,
                           environ_base={"REMOTE_ADDR": ATTACKER}).status_code

    def stored():
        with app.app_context():
            return ThrottleEvent.select().where(ThrottleEvent.scope == "webhook.address").count()

    assert [post(n) for n in range(3)] == [202, 202, 202]
    assert stored() == 1  # the first one synced; two wait in the process
    clock.advance(seconds=1.5)
    assert post(3) == 202
    assert stored() == 4
