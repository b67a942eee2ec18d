"""Strict request bodies and the OpenAPI document, from one declaration per route.

Each API view is decorated with ``@spec(...)``: its summary, the minimum role, and the
fields its JSON body accepts. The same declaration validates requests (unknown fields,
wrong types and missing fields are refused with a 4xx JSON error) and is rendered into
``/api/v1/openapi.json``, so the document cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import abort, request


@dataclass(frozen=True)
class F:
    """One body field."""

    type: str  # string | integer | boolean
    required: bool = False
    max_length: int | None = None
    enum: tuple | None = None
    nullable: bool = False
    description: str = ""

    def check(self, name, value):
        if value is None:
            if self.nullable:
                return None
            abort(422, description=f"{name} must not be null.")
        if self.type == "string":
            if not isinstance(value, str):
                abort(422, description=f"{name} must be a string.")
            if self.max_length and len(value) > self.max_length:
                abort(422, description=f"{name} is limited to {self.max_length} characters.")
        elif self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int) or not (0 < value < 2**62):
                abort(422, description=f"{name} must be a positive integer.")
        elif self.type == "boolean" and not isinstance(value, bool):
            abort(422, description=f"{name} must be true or false.")
        if self.enum and value not in self.enum:
            abort(422, description=f"{name} must be one of: {', '.join(map(str, self.enum))}.")
        return value

    def openapi(self) -> dict:
        out = {"type": self.type}
        if self.max_length:
            out["maxLength"] = self.max_length
        if self.enum:
            out["enum"] = list(self.enum)
        if self.nullable:
            out["nullable"] = True
        if self.description:
            out["description"] = self.description
        return out


def spec(summary: str, *, role: str = "agent", body: dict | None = None, query: dict | None = None,
         tag: str = "general", status: int = 200):
    def decorate(view):
        view.api_spec = {
            "summary": summary,
            "role": role,
            "body": body,
            "query": query or {},
            "tag": tag,
            "status": status,
        }
        return view

    return decorate


def json_body(fields: dict) -> dict:
    """The request's JSON object, checked against ``fields``; abort with 4xx otherwise."""
    if not request.is_json:
        abort(415, description="Send the body as JSON with Content-Type: application/json.")
    data = request.get_json(silent=True)
    if data is None:
        abort(400, description="The body is not valid JSON.")
    if not isinstance(data, dict):
        abort(400, description="The body must be a JSON object.")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        abort(400, description=f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(sorted(fields))}.")
    missing = sorted(k for k, f in fields.items() if f.required and k not in data)
    if missing:
        abort(422, description=f"Missing field(s): {', '.join(missing)}.")
    return {k: fields[k].check(k, v) for k, v in data.items()}


def query_int(name: str, default: int, low: int = 1, high: int = 100) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, description=f"{name} must be an integer.")
    if not low <= value <= high:
        abort(400, description=f"{name} must be between {low} and {high}.")
    return value


def openapi_document(app) -> dict:
    paths: dict = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        view = app.view_functions[rule.endpoint]
        meta = getattr(view, "api_spec", None)
        if meta is None:
            continue
        path = rule.rule.replace("/api/v1", "", 1)
        params = []
        for arg in rule.arguments:
            path = path.replace(f"<id:{arg}>", f"{{{arg}}}").replace(f"<{arg}>", f"{{{arg}}}")
            params.append({"name": arg, "in": "path", "required": True, "schema": {"type": "integer"}})
        for name, field in meta["query"].items():
            params.append({"name": name, "in": "query", "required": False, "schema": field.openapi()})
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            op = {
                "operationId": f"{rule.endpoint.split('.', 1)[1]}_{method.lower()}",
                "summary": meta["summary"],
                "description": f"Needs the {meta['role']} role in the tenant concerned.",
                "tags": [meta["tag"]],
                "parameters": params,
                "responses": {
                    str(meta["status"]): {"description": "Success", "content": {"application/json": {}}},
                    "4XX": {"$ref": "#/components/responses/Error"},
                },
            }
            if meta["body"] is not None and method in ("POST", "PATCH", "PUT"):
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {k: f.openapi() for k, f in meta["body"].items()},
                                "required": [k for k, f in meta["body"].items() if f.required],
                            }
                        }
                    },
                }
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Contact-center appliance API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"token": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "An error, with a message saying what to do",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {"type": "string"},
                                    "message": {"type": "string"},
                                    "status": {"type": "integer"},
                                },
                            }
                        }
                    },
                }
            },
        },
    }
