"""The licence page, program assignment, and the licence banner on every page (issue 4).

``/t/<provider>/licence`` is the provider admins' page: state, limits and use,
days left, history, the install form, and programs per tenant.
``/t/<tenant>/licence`` for an account's admin shows the state and that tenant's
programs, so a refused feature can be explained where it is refused.

Hook for the app factory: ``register(app)`` (one line in register_blueprints).
Hook for the layout: ``{% include "licence/_banner.html" %}`` near the top of
the base template; the context processor below fills ``licence_banner``.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from jinja2 import TemplateNotFound

from appliance.licence.format import MAX_LICENCE_BYTES, LicenceError
from webapp import licensing
from webapp.api.licence import parse_when, provider_admin
from webapp.auth import tenant_view
from webapp.models.licensing import TenantProgram
from webapp.models.tenancy import PROVIDER, Tenant
from webapp.services import ServiceError

licence = Blueprint("licence", __name__)

TENANTS_SHOWN = 500


def register(app) -> None:
    """Attach the licence UI and API routes; call before the ``api`` blueprint is registered."""
    import webapp.api.licence  # noqa: F401  (adds its routes to the api blueprint)

    app.register_blueprint(licence)


def _layout() -> str:
    """The lead's base layout when it exists, else a minimal standalone one."""
    from flask import current_app

    try:
        current_app.jinja_env.get_template("base.html")
        return "base.html"
    except TemplateNotFound:
        return "licence/_standalone.html"


@licence.app_context_processor
def _licence_banner():
    if not request.endpoint or request.endpoint.startswith(("public.", "static", "api.")):
        return {}
    from webapp.auth import load_user

    if load_user() is None:
        return {}
    provider = Tenant.get_or_none(Tenant.level == PROVIDER)
    link = None
    if provider is not None and provider_admin(g.principal):
        link = url_for("licence.page", tenant_id=provider.id)
    return {"licence_banner": licensing.banner(), "licence_page_url": link}


def _programs_by_tenant(tenants) -> dict[int, list[TenantProgram]]:
    out: dict[int, list[TenantProgram]] = {}
    ids = [t.id for t in tenants]
    if not ids:
        return out
    for row in TenantProgram.select().where(TenantProgram.tenant.in_(ids)).order_by(TenantProgram.program):
        out.setdefault(row.tenant_id, []).append(row)
    return out


@licence.route("/t/<id:tenant_id>/licence")
@tenant_view("admin")
def page(tenant):
    service = licensing.service()
    state = licensing.current_state()
    is_provider_admin = provider_admin(g.principal)
    context = {
        "layout": _layout(),
        "tenant": tenant,
        "state": state,
        "is_provider_admin": is_provider_admin,
        "titles": licensing.PROGRAM_TITLES,
        "max_bytes": MAX_LICENCE_BYTES,
    }
    if tenant.level == PROVIDER and is_provider_admin:
        tenants = list(
            Tenant.select().where(Tenant.level != PROVIDER).order_by(Tenant.path).limit(TENANTS_SHOWN)
        )
        context.update(
            report=service.report(),
            tenants=tenants,
            assigned=_programs_by_tenant(tenants),
            usable={t.id: licensing.tenant_programs(t, state) for t in tenants},
        )
        return render_template("licence/page.html", **context)
    context.update(
        assigned=_programs_by_tenant([tenant]),
        usable={tenant.id: licensing.tenant_programs(tenant, state)},
    )
    return render_template("licence/tenant.html", **context)


@licence.route("/t/<id:tenant_id>/licence/install", methods=["POST"])
@tenant_view("admin")
def install(tenant):
    if tenant.level != PROVIDER or not provider_admin(g.principal):
        abort(403, description="Only the provider's admins can install a licence.")
    text = request.form.get("licence") or ""
    upload = request.files.get("licence_file")
    if upload and upload.filename:
        text = upload.read(MAX_LICENCE_BYTES + 1).decode("ascii", errors="replace")
    if not text.strip():
        flash("Paste the licence text or choose the licence file.", "error")
        return redirect(url_for("licence.page", tenant_id=tenant.id))
    try:
        lic, created = licensing.service().install(text, actor_id=g.principal.user_id)
    except LicenceError as exc:
        flash(f"Licence refused: {exc}", "error")
        return render_again(tenant, 422)
    if created:
        flash(f"Licence {lic.licence_id} for {lic.customer} installed.", "info")
    else:
        flash(f"Licence {lic.licence_id} was installed already.", "info")
    return redirect(url_for("licence.page", tenant_id=tenant.id))


def render_again(tenant, status: int):
    """Show the page with the flash at once, with an error status the browser and tests see."""
    g.pop("_licence_state", None)
    response = page.__wrapped__(tenant)
    return response, status


@licence.route("/t/<id:tenant_id>/licence/programs", methods=["POST"])
@tenant_view("admin")
def assign(tenant):
    if not provider_admin(g.principal):
        abort(403, description="Only the provider's admins can assign programs.")
    program = (request.form.get("program") or "").strip()
    back = request.form.get("back") == "provider"
    try:
        licensing.assign_program(tenant, program, effective_from=parse_when(request.form.get("effective_from")),
                                 actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        status = exc.status
    else:
        flash(f"Program '{program}' assigned to {tenant.name}.", "info")
        status = None
    target = Tenant.get(Tenant.level == PROVIDER).id if back else tenant.id
    if status:
        return render_again(Tenant.get_by_id(target), status)
    return redirect(url_for("licence.page", tenant_id=target))


@licence.route("/t/<id:tenant_id>/licence/programs/remove", methods=["POST"])
@tenant_view("admin")
def unassign(tenant):
    if not provider_admin(g.principal):
        abort(403, description="Only the provider's admins can take programs away.")
    program = (request.form.get("program") or "").strip()
    if licensing.unassign_program(tenant, program, actor_id=g.principal.user_id):
        flash(f"Program '{program}' taken away from {tenant.name}.", "info")
    back = request.form.get("back") == "provider"
    target = Tenant.get(Tenant.level == PROVIDER).id if back else tenant.id
    return redirect(url_for("licence.page", tenant_id=target))
