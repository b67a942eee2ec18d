"""Bad input on every API endpoint gets a 4xx with a JSON error body, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.test_isolation import _url


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
            path = _url(rule, world, "A1")
            for label, data, ctype in BAD_BODIES:
                resp = client.open(path, method=method, headers=headers, data=data, content_type=ctype)
                _assert_json_4xx(resp, f"{method} {rule.endpoint} with {label}")
                seen += 1
    assert seen >= 7 * 15


def test_wrong_types_on_every_field(app, client, world):
    headers = world.headers("P", "admin")
    wrong = {"string": 12345, "integer": "12", "boolean": "yes"}
    for rule in _api_rules(app):
        spec = app.view_functions[rule.endpoint].api_spec
        if not spec["body"]:
            continue
        for method in rule.methods & {"POST", "PATCH"}:
            for name, field in spec["body"].items():
                for bad in (wrong[field.type], {"nested": True}, ["list"]):
                    resp = client.open(_url(rule, world, "A1"), method=method, headers=headers,
                                       json={name: bad})
                    _assert_json_4xx(resp, f"{method} {rule.endpoint} {name}={bad!r}")
                if field.max_length:
                    resp = client.open(_url(rule, world, "A1"), method=method, headers=headers,
                                       json={name: "x" * (field.max_length + 1)})
                    _assert_json_4xx(resp, f"{method} {rule.endpoint} {name} too long")


def test_oversized_body_is_413(app, client, world):
    headers = world.headers("P", "admin")
    big = json.dumps({"body": "x" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    for rule in _api_rules(app):
        for method in rule.methods & {"POST", "PATCH"}:
            resp = client.open(_url(rule, world, "A1"), method=method, headers=headers, data=big,
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


@pytest.mark.parametrize("query", ["limit=abc", "limit=0", "limit=100000", "cursor=garbage", "status=nope",
                                   "assignee=x", "channel_id=abc", "after=-5"])
def test_bad_query_parameters(client, world, query):
    headers = world.headers("A", "admin")
    tid = world.tenants["A"].id
    for path in (f"/api/v1/tenants/{tid}/conversations", f"/api/v1/tenants/{tid}/contacts",
                 f"/api/v1/conversations/{world.objects['A']['conversation'].id}/messages"):
        resp = client.get(f"{path}?{query}", headers=headers)
        assert resp.status_code < 500, f"{path}?{query}"
        if resp.status_code >= 400:
            _assert_json_4xx(resp, f"{path}?{query}")


def test_unknown_api_path_and_method_are_json(client, world):
    headers = world.headers("A", "admin")
    _assert_json_4xx(client.get("/api/v1/nope", headers=headers), "unknown path")
    _assert_json_4xx(client.put("/api/v1/tenants", headers=headers, json={}), "wrong method")
