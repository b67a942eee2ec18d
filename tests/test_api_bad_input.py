"""Bad input on every API endpoint gets a 4xx with a JSON error body, never a 500."""

from __future__ import annotations

import json

import pytest

from appliance.web.channels.webhook import signed_headers
from tests.helpers import rule_url


def _api_rules(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith("api.") and r.endpoint != "api.openapi"]


def _assert_json_4xx(resp, context):
    assert 400 <= resp.status_code < 500, f"{context}: got {resp.status_code}"
    body = resp.get_json(silent=True)
    assert isinstance(body, dict) and body.get("message"), f"{context}: no JSON error body"
    assert "Traceback" not in resp.get_data(as_text=True)


BAD_BODIES = [
    ("malformed JSON", b'{"name": ', "application/json"),
    ("not an object", b"[1, 2, 3]", "application/json"),
    ("a bare string", b'"hello"', "application/json"),
    ("unknown field", json.dumps({"definitely_not_a_field": 1}).encode(), "application/json"),
    ("not UTF-8", b'{"name": "\xff\xfe"}', "application/json"),
    ("wrong content type", b"name=x", "application/x-www-form-urlencoded"),
    ("empty body", b"", "application/json"),
]


def test_bad_bodies_on_every_writing_endpoint(app, client, world):
    headers = world.headers("P", "admin")  # the provider admin reaches every route
    seen = 0
    for rule in _api_rules(app):
        for method in rule.methods & {"POST", "PATCH", "PUT"}:
            path = rule_url(rule, world, "A1")
            for label, data, ctype in BAD_BODIES:
                resp = client.open(path, method=method, headers=headers, data=data, content_type=ctype)
                _assert_json_4xx(resp, f"{method} {rule.endpoint} with {label}")
                seen += 1
    assert seen >= 7 * 15


def test_wrong_types_on_every_field(app, client, world):
    headers = world.headers("P", "admin")
    wrong = {"string": 12345, "integer": "12", "boolean": "yes", "array": "not a list"}
    for rule in _api_rules(app):
        spec = app.view_functions[rule.endpoint].api_spec
        if not spec["body"]:
            continue
        for method in rule.methods & {"POST", "PATCH"}:
            for name, field in spec["body"].items():
                for bad in (wrong[field.type], {"nested": True}, ["list"]):
                    resp = client.open(rule_url(rule, world, "A1"), method=method, headers=headers,
                                       json={name: bad})
                    _assert_json_4xx(resp, f"{method} {rule.endpoint} {name}={bad!r}")
                if field.max_length:
                    resp = client.open(rule_url(rule, world, "A1"), method=method, headers=headers,
                                       json={name: "x" * (field.max_length + 1)})
                    _assert_json_4xx(resp, f"{method} {rule.endpoint} {name} too long")


def test_oversized_body_is_413(app, client, world):
    headers = world.headers("P", "admin")
    big = json.dumps({"body": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    for rule in _api_rules(app):
        for method in rule.methods & {"POST", "PATCH"}:
            resp = client.open(rule_url(rule, world, "A1"), method=method, headers=headers, data=big,
                               content_type="application/json")
            assert resp.status_code == 413, rule.endpoint
            _assert_json_4xx(resp, f"{method} {rule.endpoint} oversized")


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "99999999999999999999999", "1.5", "%00", "999999"])
def test_invalid_ids_on_every_endpoint(app, client, world, bad_id):
    headers = world.headers("P", "admin")
    for rule in _api_rules(app):
        if not rule.arguments:
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<id:{arg}>", bad_id)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            resp = client.open(path, method=method, headers=headers, json={} if method != "GET" else None)
            _assert_json_4xx(resp, f"{method} {path}")


# Bad values for query parameters each list endpoint reads (a parameter an endpoint
# does not read is ignored, as HTTP allows).
BAD_QUERIES = {
    "api.list_conversations": ["limit=abc", "limit=0", "limit=100000", "cursor=garbage", "status=nope",
                               "assignee=x", "channel_id=abc", "team_id=x"],
    "api.list_contacts": ["limit=abc", "limit=0", "limit=100000", "after=-5", "after=abc"],
    "api.list_messages": ["limit=abc", "limit=0", "limit=100000", "after=-5", "after=abc"],
}


@pytest.mark.parametrize("endpoint", list(BAD_QUERIES))
def test_bad_query_parameters(app, client, world, endpoint):
    headers = world.headers("A", "admin")
    rule = next(r for r in _api_rules(app) if r.endpoint == endpoint)
    declared = app.view_functions[endpoint].api_spec["query"]
    path = rule_url(rule, world, "A")
    for query in BAD_QUERIES[endpoint]:
        assert query.split("=")[0] in declared, f"{endpoint} does not read {query}"
        _assert_json_4xx(client.get(f"{path}?{query}", headers=headers), f"{path}?{query}")
    assert client.get(path, headers=headers).status_code == 200  # the same URL without them answers


def test_integer_query_parameters_refuse_text_everywhere(app, client, world):
    headers = world.headers("P", "admin")
    seen = 0
    for rule in _api_rules(app):
        if "GET" not in rule.methods:
            continue
        for name, field in app.view_functions[rule.endpoint].api_spec["query"].items():
            if field.type == "integer":
                path = rule_url(rule, world, "A")
                _assert_json_4xx(client.get(f"{path}?{name}=abc", headers=headers), f"{path}?{name}=abc")
                seen += 1
    assert seen >= 5


def test_unknown_api_path_and_method_are_json(client, world):
    headers = world.headers("A", "admin")
    _assert_json_4xx(client.get("/api/v1/nope", headers=headers), "unknown path")
    _assert_json_4xx(client.put("/api/v1/tenants", headers=headers, json={}), "wrong method")


# One status per fault, whichever JSON endpoint receives the body: syntax 400, content 422.
FAULTS = [
    ("malformed JSON", b'{"body": ', 400),
    ("not UTF-8", b'{"body": "\xff\xfe"}', 400),
    ("not an object", b'["body"]', 400),
    ("unknown field", b'{"body": "x", "admin": true}', 422),
    ("wrong type", b'{"body": 5}', 422),
    ("too long", json.dumps({"body": "x" * 20_001}).encode(), 422),
]


def test_one_status_per_fault_on_api_widget_and_webhook(client, world):
    api_headers = world.headers("A", "agent") | {"Content-Type": "application/json"}
    hook = world.objects["B"]["shared_channel"]  # kind webhook
    endpoints = {
        "api": lambda raw: client.post(f"/api/v1/conversations/{world.objects['A']['conversation'].id}/messages",
                                       data=raw, headers=api_headers),
        "widget": lambda raw: client.post(f"/widget/{world.objects['A']['channel'].public_key}/messages",
                                          data=raw, content_type="application/json"),
        "webhook": lambda raw: client.post(f"/hooks/{hook.public_key}", data=raw, content_type="application/json",
                                           headers=signed_headers(hook.secret, raw)),
    }
    for name, post in endpoints.items():
        for label, raw, status in FAULTS:
            resp = post(raw)
            assert resp.status_code == status, f"{name} with {label}: {resp.get_data(as_text=True)[:200]}"
            assert resp.get_json()["status"] == status and resp.get_json()["message"], f"{name} with {label}"
    # Faults only the API can have: a missing required field, and a body not declared as JSON.
    url = f"/api/v1/conversations/{world.objects['A']['conversation'].id}/messages"
    assert client.post(url, data=b"{}", headers=api_headers).status_code == 422
    assert client.post(url, data=b'{"body": "x"}', headers=world.headers("A", "agent"),
                       content_type="text/plain").status_code == 415
