"""Deeply nested or oversized JSON answers 4xx on every JSON entry point, never a 500."""

from __future__ import annotations

import pytest

from appliance.web.channels.webhook import signed_headers
from appliance.web.validation import nesting_depth

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"body": ' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"}"


def test_depth_scan_skips_brackets_inside_strings():
    assert nesting_depth(b'{"body": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 5) == 1
    assert nesting_depth(b'{"a": "\\"[[[[[[[[[", "b": [[1]]}', 2) == 3
    assert nesting_depth(DEEP, 32) == 33  # stops counting past the limit


@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_on_the_widget_is_400(client, world, raw):
    key = world.objects["A"]["channel"].public_key
    answer = client.post(f"/widget/{key}/messages", data=raw, content_type="application/json")
    assert answer.status_code == 400
    assert "json_max_depth" in answer.get_json()["message"]


@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_on_the_webhook_is_400(client, world, raw):
    channel = world.objects["A"]["shared_channel"]
    answer = client.post(f"/hooks/{channel.public_key}", data=raw, content_type="application/json",
                         headers=signed_headers(channel.secret, raw))
    assert answer.status_code == 400
    assert "json_max_depth" in answer.get_json()["message"]


@pytest.mark.parametrize("raw", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deep_json_on_the_api_is_400(client, world, raw):
    tenant = world.tenants["A"]
    answer = client.post(f"/api/v1/tenants/{tenant.id}/contacts", data=raw, content_type="application/json",
                         headers=world.headers("A", "admin"))
    assert answer.status_code == 400
    assert "json_max_depth" in answer.get_json()["message"]


def test_oversized_json_is_413_naming_the_setting(client, world):
    tenant = world.tenants["A"]
    raw = b'{"name": "' + b"x" * (300 * 1024) + b'"}'
    answer = client.post(f"/api/v1/tenants/{tenant.id}/contacts", data=raw, content_type="application/json",
                         headers=world.headers("A", "admin"))
    assert answer.status_code == 413
    assert "json_max_bytes" in answer.get_json()["message"]


def test_reasonable_nesting_still_reaches_field_checks(client, world):
    tenant = world.tenants["A"]
    answer = client.post(f"/api/v1/tenants/{tenant.id}/contacts", json={"name": [[[["x"]]]]},
                         headers=world.headers("A", "admin"))
    assert answer.status_code == 422
