"""Every API route declares its response schema, and the OpenAPI document publishes it."""

from __future__ import annotations

import jsonschema
import pytest


@pytest.fixture
def sqlite_app(db_url, app):
    if not db_url.startswith("sqlite"):
        pytest.skip("the document does not depend on the database")
    return app


def test_every_api_route_declares_a_response_schema(sqlite_app):
    missing = []
    for rule in sqlite_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        meta = getattr(sqlite_app.view_functions[rule.endpoint], "api_spec", None)
        if meta is None or not meta.get("response"):
            missing.append(rule.endpoint)
    assert not missing, "give these @spec(...) a response= schema (appliance/web/api/responses.py): " + ", ".join(
        missing)


def test_the_document_carries_the_schemas(sqlite_app):
    doc = sqlite_app.test_client().get("/api/v1/openapi.json").get_json()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            success = [code for code in op["responses"] if code.startswith("2")]
            assert success, (method, path)
            content = op["responses"][success[0]]["content"]
            if "application/octet-stream" in content:  # a download: bytes, declared as such
                assert content["application/octet-stream"]["schema"]["format"] == "binary", (method, path)
                continue
            schema = content["application/json"]["schema"]
            jsonschema.Draft7Validator.check_schema(schema)
            assert schema["type"] == "object", (method, path)


def test_answers_match_their_schema(sqlite_app, world):
    from appliance.web.api.schema import openapi_document

    client = sqlite_app.test_client()
    doc = openapi_document(sqlite_app)
    a = world.tenants["A"].id
    conv = world.objects["A"]["conversation"].id
    for path in (f"/tenants/{a}", f"/tenants/{a}/contacts", f"/conversations/{conv}", f"/tenants/{a}/members",
                 f"/conversations/{conv}/messages", "/me", "/licence", f"/tenants/{a}/programs"):
        answer = client.get("/api/v1" + path, headers=world.headers("A", "admin"))
        assert answer.status_code == 200, path
        template = next(p for p in doc["paths"] if _matches(p, path))
        schema = doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(answer.get_json(), _nullable(schema))


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def _nullable(schema):
    """OpenAPI 3.0's ``nullable`` in plain JSON-schema terms."""
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable"):
            out["type"] = [schema["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_nullable(s) for s in schema]
    return schema
