"""Access, strict request bodies and the OpenAPI document, from one declaration per route.

Each API view is decorated with ``@spec(...)``: its summary, the minimum role, who may
use it at all (``scope``) and the fields its JSON body accepts. The same declaration is
enforced on every request and rendered into ``/api/v1/openapi.json``, so neither the
handlers nor the document can drift from it. For each request, in this order:

1. what the URL names is loaded: ``tenant_id`` becomes the ``tenant`` argument of the
   handler, ``channel_id`` the ``channel``, and so on (see ``TARGETS``); a route without
   URL arguments concerns the token's own tenant;
2. the principal needs ``role`` in that tenant (the object's owner for objects): a tenant
   or object it cannot reach at all answers 404, too small a role 403;
3. ``scope="provider"`` routes also need an admin of the provider tenant (403);
4. the body, when one is declared, is checked (appliance.web.validation) and passed as ``data``.

Handlers only add the checks finer than the declared minimum (for example, a
supervisor-only field inside an agent route).
"""

from __future__ import annotations

import functools

from flask import abort, g, request

from appliance.web.access import is_provider_admin, object_or_404, require_role, tenant_or_404
from appliance.web.models.contact_center import (
    Article,
    Attachment,
    CannedAnswer,
    Channel,
    Contact,
    Conversation,
    Label,
    Message,
    Team,
)
from appliance.web.models.tenancy import ROLES, ApiToken, Membership, Tenant
from appliance.web.validation import request_json

# URL argument -> the model it names; the handler gets the loaded row under the name without "_id".
TARGETS = {
    "member_id": Membership,
    "token_id": ApiToken,
    "channel_id": Channel,
    "contact_id": Contact,
    "conversation_id": Conversation,
    "canned_id": CannedAnswer,
    "article_id": Article,
    "message_id": Message,
    "attachment_id": Attachment,
    "team_id": Team,
    "label_id": Label,
}
# "tenant": the role in the tenant concerned is enough; "provider": an admin of the provider, too.
SCOPES = ("tenant", "provider")


def spec(summary: str, *, role: str = "agent", scope: str = "tenant", body: dict | None = None,
         query: dict | None = None, tag: str = "general", status: int = 200, shared_read: bool = False,
         response: dict | None = None, inactive_writable: bool = False):
    """Declare and enforce an API route's access and body (see the module docstring).

    ``inactive_writable`` lets a changing request reach a deactivated tenant (reactivating
    it); otherwise a deactivated tenant's data answers reads only (appliance.web.access).
    ``shared_read`` lets a principal below the owner read an object its owner shares down.
    ``response`` is the JSON schema of the success answer (appliance.web.api.responses);
    optional here, but tests/test_hardening_openapi.py requires one on every route.
    """
    if role not in ROLES:
        raise ValueError(f"@spec role must be one of {', '.join(ROLES)}, not {role!r}.")
    if scope not in SCOPES:
        raise ValueError(f"@spec scope must be one of {', '.join(SCOPES)}, not {scope!r}.")

    def decorate(view):
        meta = {
            "summary": summary,
            "role": role,
            "scope": scope,
            "body": body,
            "query": query or {},
            "tag": tag,
            "status": status,
            "shared_read": shared_read,
            "response": response,
            "inactive_writable": inactive_writable,
        }

        @functools.wraps(view)
        def enforced(**url_args):
            kwargs = _load_and_check(meta, url_args)
            if body is not None:
                kwargs["data"] = request_json(body)
            return view(**kwargs)

        enforced.api_spec = meta
        return enforced

    return decorate


def _load_and_check(meta: dict, url_args: dict) -> dict:
    principal, role = g.principal, meta["role"]
    loaded = {}
    for arg, value in url_args.items():
        if arg == "tenant_id":
            loaded["tenant"] = tenant_or_404(principal, value, role, inactive_writable=meta["inactive_writable"])
        elif arg in TARGETS:
            loaded[arg.removesuffix("_id")] = object_or_404(principal, TARGETS[arg], value, role,
                                                            allow_shared_read=meta["shared_read"])
        else:
            raise LookupError(f"@spec does not know the URL argument {arg!r}: add its model to TARGETS "
                              f"in {__name__}.")
    if not url_args:
        require_role(principal, Tenant.get_by_id(g.token.tenant_id), role)
    if meta["scope"] == "provider" and not is_provider_admin(principal):
        abort(403, description="Only the provider's admins can do this.")
    return loaded


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


def _access_text(meta: dict) -> str:
    text = f"Needs the {meta['role']} role in the tenant concerned"
    if meta["scope"] == "provider":
        text += ", and an admin of the provider tenant"
    return text + "."


def _media_type(response: dict | None) -> str:
    """Downloads (a binary string schema) are bytes, everything else JSON."""
    if response and response.get("type") == "string" and response.get("format") == "binary":
        return "application/octet-stream"
    return "application/json"


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
                "description": _access_text(meta),
                "x-access": {"role": meta["role"], "scope": meta["scope"]},
                "tags": [meta["tag"]],
                "parameters": params,
                "responses": {
                    str(meta["status"]): {
                        "description": "Success",
                        "content": {_media_type(meta["response"]): {"schema": meta["response"]}
                                    if meta["response"] else {}},
                    },
                    "4XX": {"$ref": "#/components/responses/Error"},
                    "5XX": {"$ref": "#/components/responses/Error"},
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
                                "required": ["error", "message", "status"],
                                "properties": {
                                    "error": {"type": "string"},
                                    "message": {"type": "string"},
                                    "status": {"type": "integer"},
                                    # 503/507 only: database_down, database_busy, database_error, disk_full, disk_io
                                    "reason": {"type": "string"},
                                },
                            }
                        }
                    },
                }
            },
        },
    }
