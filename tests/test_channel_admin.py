"""Channel admin: per-kind settings in the API and the UI, secrets write-only and sealed at rest,
generated secrets shown once, test connection against the loopback double, status."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from appliance.web.models.channels import ChannelConfig
from tests.channel_doubles import TelegramDouble
from tests.helpers import login

BOT_TOKEN = "123456:TEST-token"


@pytest.fixture
def telegram():
    with TelegramDouble(BOT_TOKEN) as double:
        yield double


def _make(client, world, kind="telegram"):
    headers = world.headers("A", "admin")
    made = client.post(f"/api/v1/tenants/{world.tenants['A'].id}/channels", headers=headers,
                       json={"kind": kind, "name": f"{kind} desk"})
    assert made.status_code == 201, made.get_data(as_text=True)
    return made.get_json()["id"], headers


def test_api_settings_are_write_only_and_generated_secrets_shown_once(client, world, telegram):
    channel_id, headers = _make(client, world)
    url = f"/api/v1/channels/{channel_id}/settings"
    form = client.get(url, headers=headers).get_json()
    assert [f["name"] for f in form["fields"]] == ["bot_token", "secret_token", "receive", "api_base_url",
                                                   "rate_per_minute"]
    assert form["settings"]["bot_token"] == {"set": False} and form["hook_url"].endswith("/hooks/" + urlparse(
        form["hook_url"]).path.rsplit("/", 1)[-1])

    saved = client.patch(url, headers=headers, json={"bot_token": BOT_TOKEN, "api_base_url": telegram.url})
    assert saved.status_code == 200
    answer = saved.get_json()
    generated = answer["generated_secrets"]["secret_token"]
    assert len(generated) >= 24 and answer["missing"] == []
    assert BOT_TOKEN not in saved.get_data(as_text=True)
    again = client.get(url, headers=headers)
    text = again.get_data(as_text=True)
    assert BOT_TOKEN not in text and generated not in text
    assert again.get_json()["settings"]["bot_token"] == {"set": True}
    assert again.get_json()["settings"]["api_base_url"] == telegram.url
    # An empty secret keeps the stored one; a second save generates nothing new.
    kept = client.patch(url, headers=headers, json={"bot_token": "", "receive": "webhook"}).get_json()
    assert kept["generated_secrets"] == {} and kept["settings"]["bot_token"] == {"set": True}

    assert client.patch(url, headers=headers, json={"app_secret": "x"}).status_code == 422  # a WhatsApp field
    assert client.patch(url, headers=headers, json={"api_base_url": "ftp://x"}).status_code == 422
    assert client.patch(url, headers=headers, json={"rate_per_minute": "fast"}).status_code == 422
    assert client.get(url, headers=world.headers("A", "supervisor")).status_code == 403
    assert client.get(url, headers=world.headers("B", "admin")).status_code == 404

    tested = client.post(f"/api/v1/channels/{channel_id}/test", headers=headers, json={})
    assert tested.get_json() == {"ok": True, "message": "Connected as @test_bot."}
    client.patch(url, headers=headers, json={"bot_token": "999:wrong"})
    failed = client.post(f"/api/v1/channels/{channel_id}/test", headers=headers, json={}).get_json()
    assert failed["ok"] is False and "401" in failed["message"]
    status = client.get(url, headers=headers).get_json()["status"]
    assert "401" in status["last_error"] and status["last_error_at"]


def test_secrets_are_sealed_at_rest(client, world, instance, request):
    channel_id, headers = _make(client, world, "whatsapp")
    secret = "Wh4tsApp-app-secret-canary-9137"
    client.patch(f"/api/v1/channels/{channel_id}/settings", headers=headers,
                 json={"app_secret": secret, "access_token": "EAAG-canary-token-5521", "phone_number_id": "1065"})
    row = ChannelConfig.get(ChannelConfig.channel == channel_id)
    assert row.settings["app_secret"] == secret  # readable through the model, with the tenant's key
    if instance.database_url.startswith("sqlite"):
        db_path = instance.home / "appliance.db"
        blob = b"".join(p.read_bytes() for p in (db_path, db_path.with_name("appliance.db-wal")) if p.exists())
    else:
        server = request.getfixturevalue("pg_server")
        blob = server.dump(urlparse(instance.database_url).path.lstrip("/"))
    assert b"whatsapp desk" in blob  # the channel's name is plain: the scan reads the real data
    assert secret.encode() not in blob and b"EAAG-canary-token-5521" not in blob


def test_settings_page_form_and_test_connection(client, world, telegram):
    channel_id, _ = _make(client, world)
    tenant = world.tenants["A"]
    login(client, world.email("A", "admin"))
    page = client.get(f"/t/{tenant.id}/admin/channels/{channel_id}/settings")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert 'name="bot_token"' in html and 'type="password"' in html
    saved = client.post(f"/t/{tenant.id}/admin/channels/{channel_id}/settings", data={
        "csrf_token": token, "bot_token": BOT_TOKEN, "secret_token": "", "receive": "webhook",
        "api_base_url": telegram.url, "rate_per_minute": ""})
    shown = saved.get_data(as_text=True)
    generated = re.search(r'data-secret="secret_token">([^<]+)<', shown).group(1)
    assert BOT_TOKEN not in shown
    later = client.get(f"/t/{tenant.id}/admin/channels/{channel_id}/settings").get_data(as_text=True)
    assert generated not in later and BOT_TOKEN not in later and telegram.url in later
    tested = client.post(f"/t/{tenant.id}/admin/channels/{channel_id}/test", data={"csrf_token": token})
    assert "Connected as @test_bot" in tested.get_data(as_text=True)
    listing = client.get(f"/t/{tenant.id}/admin/channels").get_data(as_text=True)
    assert f"/t/{tenant.id}/admin/channels/{channel_id}/settings" in listing
