"""The licence page, program assignment, and the licence banner on every page.

``/t/<provider>/licence`` is the provider admins' page: state, limits and use,
days left, history, the install form, and programs per tenant.
``/t/<tenant>/licence`` for an account's admin shows the state and that tenant's
programs, so a refused feature can be explained where it is refused.

The banner reaches every page through the context processor below, which adds it to
the ``banners`` that base.html renders.
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

from appliance.core.licence.format import MAX_LICENCE_BYTES, LicenceError
from appliance.core.licence.programs import PROGRAM_TITLES
from appliance.web.access import is_provider_admin
from appliance.web.auth import load_user, provider_view, tenant_view
from appliance.web.models.licence import TenantProgram
from appliance.web.models.tenancy import PROVIDER, Tenant
from appliance.web.services import ServiceError, licence

licence_pages = Blueprint("licence", __name__)

TENANTS_SHOWN = 500


@licence_pages.app_context_processor
def _licence_context():
    """The banner on every page of a logged-in user, and a nav link for tenant admins.

    base.html renders ``banners`` ((level, text) pairs) and ``extra_admin_nav``
    ((label, url) pairs). Other features can add theirs to ``g.banners`` /
    ``g.extra_admin_nav`` before rendering; these lists keep them.
    """
    if not request.endpoint or request.endpoint.startswith(("public.", "static", "api.")):
        return {}
    if load_user() is None:
        return {}
    message = licence.banner()
    banners = list(g.get("banners", []))
    if message is not None:
        banners.append((message.level, message.text))
    out = {"banners": banners}
    tenant = g.get("tenant")
    if tenant is not None:
        link = ("Licence", url_for("licence.tenant_page", tenant_id=tenant.id))
        out["extra_admin_nav"] = [*g.get("extra_admin_nav", []), link]
    return out


def _programs_by_tenant(tenants) -> dict[int, list[TenantProgram]]:
    out: dict[int, list[TenantProgram]] = {}
    ids = [t.id for t in tenants]
    if not ids:
        return out
    for row in TenantProgram.select().where(TenantProgram.tenant.in_(ids)).order_by(TenantProgram.program):
        out.setdefault(row.tenant_id, []).append(row)
    return out


@licence_pages.route("/licence")
@provider_view("admin")
def page():
    """The provider admins' page (installation-wide)."""
    return _render_provider_page()


def _render_provider_page(status: int = 200):
    g.pop("_licence_state", None)  # after an install in this request
    state = licence.current_state()
    tenants = list(Tenant.select().where(Tenant.level != PROVIDER).order_by(Tenant.path).limit(TENANTS_SHOWN))
    return render_template(
        "licence/page.html",
        state=state,
        is_provider_admin=True,
        titles=PROGRAM_TITLES,
        max_bytes=MAX_LICENCE_BYTES,
        report=licence.service().report(),
        tenants=tenants,
        assigned=_programs_by_tenant(tenants),
        usable={t.id: licence.tenant_programs(t, state) for t in tenants},
    ), status


@licence_pages.route("/t/<id:tenant_id>/licence")
@tenant_view("admin")
def tenant_page(tenant):
    """A tenant admin's view: the licence state and this tenant's programs."""
    if tenant.level == PROVIDER and is_provider_admin(g.principal):
        return redirect(url_for("licence.page"))
    return _render_tenant_page(tenant)


def _render_tenant_page(tenant, status: int = 200):
    g.pop("_licence_state", None)
    state = licence.current_state()
    return render_template(
        "licence/tenant.html",
        tenant=tenant,
        state=state,
        is_provider_admin=is_provider_admin(g.principal),
        titles=PROGRAM_TITLES,
        assigned=_programs_by_tenant([tenant]),
        usable={tenant.id: licence.tenant_programs(tenant, state)},
    ), status


@licence_pages.route("/licence/install", methods=["POST"])
@provider_view("admin")
def install():
    text = request.form.get("licence") or ""
    upload = request.files.get("licence_file")
    if upload and upload.filename:
        text = upload.read(MAX_LICENCE_BYTES + 1).decode("ascii", errors="replace")
    if not text.strip():
        flash("Paste the licence text or choose the licence file.", "error")
        return _render_provider_page(422)
    try:
        lic, created = licence.service().install(text, actor_id=g.principal.user_id)
    except LicenceError as exc:
        flash(f"Licence refused: {exc}", "error")
        return _render_provider_page(422)
    if created:
        flash(f"Licence {lic.licence_id} for {lic.customer} installed.", "info")
    else:
        flash(f"Licence {lic.licence_id} was installed already.", "info")
    return redirect(url_for("licence.page"))


def _back(tenant, status: int | None):
    """Where a program form returns: the provider page or the tenant's page."""
    if request.form.get("back") == "provider":
        return _render_provider_page(status) if status else redirect(url_for("licence.page"))
    if status:
        return _render_tenant_page(tenant, status)
    return redirect(url_for("licence.tenant_page", tenant_id=tenant.id))


@licence_pages.route("/t/<id:tenant_id>/licence/programs", methods=["POST"])
@tenant_view("admin")
def assign(tenant):
    if not is_provider_admin(g.principal):
        abort(403, description="Only the provider's admins can assign programs.")
    program = (request.form.get("program") or "").strip()
    try:
        licence.assign_program(tenant, program, effective_from=licence.parse_when(request.form.get("effective_from")),
                                 actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return _back(tenant, exc.status)
    flash(f"Program '{program}' assigned to {tenant.name}.", "info")
    return _back(tenant, None)


@licence_pages.route("/t/<id:tenant_id>/licence/programs/remove", methods=["POST"])
@tenant_view("admin")
def unassign(tenant):
    if not is_provider_admin(g.principal):
        abort(403, description="Only the provider's admins can take programs away.")
    program = (request.form.get("program") or "").strip()
    if licence.unassign_program(tenant, program, actor_id=g.principal.user_id):
        flash(f"Program '{program}' taken away from {tenant.name}.", "info")
    return _back(tenant, None)
