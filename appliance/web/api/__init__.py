"""The JSON API under /api/v1: per-tenant bearer tokens, strict bodies, OpenAPI."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, request

from appliance.web.access import Principal
from appliance.web.auth import must_change_password, must_enrol
from appliance.web.models.audit import record
from appliance.web.models.base import utcnow
from appliance.web.models.tenancy import ApiToken, Tenant, User
from appliance.web.services import ServiceError
from appliance.web.services.licence import require_program
from appliance.web.services.tokens import TOKEN_PREFIX, hash_token

api = Blueprint("api", __name__, url_prefix="/api/v1")

@api.before_request
def _authenticate():
    if request.endpoint == "api.openapi":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        abort(401, description="Send an API token as 'Authorization: Bearer apl_...' (tenant admins create them).")
    row = ApiToken.get_or_none(ApiToken.token_hash == hash_token(token.strip()))
    if row is None or row.revoked:
        abort(401, description="This API token is unknown or revoked.")
    now = utcnow()
    if row.is_expired(now):
        abort(401, description="This API token has expired; a tenant admin can create a new one.")
    tenant = Tenant.get_by_id(row.tenant_id)
    if not tenant.is_active:
        abort(401, description="This API token's tenant is deactivated.")
    principal = Principal.for_token(row)
    if not principal.grants:
        abort(401, description="This API token's creator no longer has access to its tenant; "
                               "a tenant admin can create a new one.")
    creator = User.get_by_id(principal.user_id)
    if must_enrol(creator):
        abort(403, description="The creator of this API token must set up TOTP (two-factor login) first.")
    if must_change_password(creator):
        abort(403, description="The creator of this API token must replace the password they were given first.")
    first_in_a_minute = row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60
    if first_in_a_minute:
        ApiToken.update(last_used_at=now).where(ApiToken.id == row.id).execute()
    g.token = row
    g.principal = principal
    g.user = None
    require_program(tenant, "api")
    if row.role == "admin" and first_in_a_minute:
        # Admin tokens can do what admins do: their use is in the audit trail, once a
        # minute per token like last_used_at (an event per request would swamp the trail).
        record("token.use", actor_id=row.created_by_id, tenant_id=row.tenant_id, target=f"token:{row.id}",
               method=request.method, endpoint=request.endpoint)


@api.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    return jsonify(error="Request refused", message=str(exc), status=exc.status), exc.status


@api.route("/openapi.json")
def openapi():
    from appliance.web.api.schema import openapi_document

    return jsonify(openapi_document(current_app))


# The route modules attach themselves to ``api``, so they are imported once it exists.
from appliance.web.api import (  # noqa: E402,F401
    attachments,
    channels,
    dashboard,
    email,
    inbox,
    licence,
    reports,
    routes,
)
from appliance.web.business import api as business_api  # noqa: E402,F401
