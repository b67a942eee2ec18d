"""Licence and program routes of the JSON API; they attach to the ``api`` blueprint.

Imported by the API package itself, so token auth, the JSON error handler and the
OpenAPI document cover them whatever order the factory registers blueprints in.
Reading is open to every token (a client should be able to learn why something
is refused); installing a licence and assigning programs are ``scope="provider"``:
``@spec`` lets only the provider's admins through, before it looks at the body.
"""

from __future__ import annotations

from flask import abort, g, jsonify, request

from appliance.core.licence.format import MAX_LICENCE_BYTES, LicenceError
from appliance.web.access import is_provider_admin
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.models.licence import TenantProgram
from appliance.web.models.tenancy import Tenant
from appliance.web.services import licence
from appliance.web.validation import F


@api.route("/licence")
@spec("Licence state; provider admins also get limits, use and history", tag="licence", response=R.LICENCE_STATE)
def licence_state():
    tenant = Tenant.get_by_id(g.token.tenant_id)
    if is_provider_admin(g.principal):
        data = licence.service().report()
    else:
        state = licence.current_state()
        data = {
            "status": state.status,
            "title": state.title,
            "days_left": state.days_left,
            "can_grow": state.can_grow,
            "messages": [{"level": m.level, "text": m.text} for m in state.messages],
        }
    data["tenant_programs"] = sorted(licence.tenant_programs(tenant))
    return jsonify(data)


INSTALL_BODY = {"text": F("string", required=True, max_length=MAX_LICENCE_BYTES, description="The armoured licence")}


@api.route("/licence", methods=["POST"])
@spec("Install a licence (provider admins)", role="admin", scope="provider", body=INSTALL_BODY, tag="licence",
      status=201, response=R.LICENCE_INSTALLED)
def licence_install(data):
    try:
        installed, created = licence.service().install(data["text"], actor_id=g.principal.user_id)
    except LicenceError as exc:
        return jsonify(error="Licence refused", reason=exc.reason, message=str(exc), status=422), 422
    return jsonify(installed=created, licence=installed.summary()), 201 if created else 200


PROGRAM_BODY = {
    "program": F("string", required=True, max_length=32),
    "effective_from": F("string", max_length=20, nullable=True,
                        description="UTC date or time; a future date makes the program start then"),
}


@api.route("/tenants/<id:tenant_id>/programs")
@spec("Programs of a tenant: assigned (with dates) and usable now", tag="licence", response=R.PROGRAMS)
def list_programs(tenant):
    rows = TenantProgram.select().where(TenantProgram.tenant == tenant.id).order_by(TenantProgram.program)
    return jsonify(items=[r.to_json() for r in rows], usable=sorted(licence.tenant_programs(tenant)))


@api.route("/tenants/<id:tenant_id>/programs", methods=["POST"])
@spec("Assign a program to a tenant (provider admins, within the licence)", role="admin", scope="provider",
      body=PROGRAM_BODY, tag="licence", status=201, response=R.PROGRAM)
def assign_program(tenant, data):
    row = licence.assign_program(tenant, data["program"], effective_from=licence.parse_when(data.get("effective_from")),
                                   actor_id=g.principal.user_id)
    return jsonify(row.to_json()), 201


@api.route("/tenants/<id:tenant_id>/programs", methods=["DELETE"])
@spec("Take a program away from a tenant (?program=NAME; provider admins)", role="admin", scope="provider",
      query={"program": F("string")}, tag="licence", response=R.PROGRAM_REMOVED)
def unassign_program(tenant):
    program = request.args.get("program", "")
    if not licence.unassign_program(tenant, program, actor_id=g.principal.user_id):
        abort(404, description=f"{tenant.name} has no '{program}' program.")
    return jsonify(removed=program)
