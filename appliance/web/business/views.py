"""Pages of the business layer.

``/business`` is the provider's desk (provider admins): prices, contracts, future-dated
changes, billing runs, invoices and payments. ``/t/<tenant>/billing`` is the account's
control panel (its admins): contract, programs, seats, pending changes, usage with a chart
and CSV, invoices and the statement. Object ids travel in forms and query strings and are
always looked up inside the tenant of the URL, so another tenant's invoice is a 404.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for

from appliance.core.calendar import today, zone
from appliance.core.licence.programs import KNOWN_PROGRAMS, PROGRAM_TITLES
from appliance.web.access import is_provider_admin
from appliance.web.auth import load_user, provider_view, tenant_view
from appliance.web.business import applications, catalogue, contracts, invoicing, quotas, schedule, usage
from appliance.web.business.billing import month_bounds
from appliance.web.business.models import CHANGE_KINDS, Application, Contract, Invoice, Notification, ScheduledChange
from appliance.web.business.money import format_amount
from appliance.web.models.tenancy import ACCOUNT, PROVIDER, Tenant
from appliance.web.services import ServiceError

business_pages = Blueprint("business", __name__)


@business_pages.record_once
def _cap_seats_by_contract(state):
    """A contract's seats and its sub-accounts' quotas cap memberships, beside the licence."""
    state.app.extensions.setdefault("seat_checks", []).append(quotas.check_seat)


def settings() -> dict:
    return current_app.extensions["appliance_instance"].settings


def local_today() -> dt.date:
    return today(zone(settings()))


@business_pages.app_template_global("money")
def money(amount: int) -> str:
    biz = settings()["business"]
    return format_amount(amount, biz["currency"], biz["currency_exponent"])


@business_pages.app_context_processor
def _nav():
    if not request.endpoint or request.endpoint.startswith(("public.", "static", "api.")) or load_user() is None:
        return {}
    tenant = g.get("tenant")
    if tenant is None or g.get("role") != "admin":
        return {}
    link = (("Business", url_for("business.desk")) if tenant.level == PROVIDER
            else ("Billing", url_for("business.panel", tenant_id=tenant.id)))
    return {"extra_admin_nav": [*g.get("extra_admin_nav", []), link]}


def _date(name: str, default: dt.date | None = None) -> dt.date:
    text = (request.values.get(name) or "").strip()
    if not text:
        if default is not None:
            return default
        raise ServiceError(f"{name}: a date like 2031-02-01 is required", 422)
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ServiceError(f"{name} must be a date like 2031-02-01, not {text[:20]!r}", 422) from None


def _int(name: str, minimum: int = 0) -> int:
    text = (request.values.get(name) or "0").strip()
    if not text.lstrip("-").isdigit() or int(text) < minimum or len(text) > 15:
        raise ServiceError(f"{name} must be a whole number >= {minimum} (money in minor units, e.g. 1999 for 19.99)",
                           422)
    return int(text)


def _account(name: str = "account_id") -> Tenant:
    tenant = Tenant.get_or_none(Tenant.id == _int(name, 1), Tenant.level == ACCOUNT)
    if tenant is None:
        raise ServiceError(f"{name}: no such account", 422)
    return tenant


def _contract(name: str = "contract_id") -> Contract:
    contract = Contract.get_or_none(Contract.id == _int(name, 1))
    if contract is None:
        raise ServiceError(f"{name}: no such contract", 422)
    return contract


# -- the provider's desk ---------------------------------------------------------------------

@business_pages.route("/business")
@provider_view("admin")
def desk(status: int = 200):
    on = local_today()
    return render_template(
        "business/desk.html", today=on, prices=catalogue.price_list(on), programs=sorted(KNOWN_PROGRAMS),
        titles=PROGRAM_TITLES, accounts=list(Tenant.select().where(Tenant.level == ACCOUNT).order_by(Tenant.name)),
        contracts=list(Contract.select(Contract, Tenant).join(Tenant).order_by(Contract.id.desc()).limit(200)),
        changes=list(schedule.pending().limit(200)), kinds=CHANGE_KINDS,
        invoices=list(Invoice.select(Invoice, Tenant).join(Tenant).order_by(Invoice.id.desc()).limit(200)),
        month=month_bounds(on)), status


def _done(message: str):
    flash(message, "info")
    return redirect(url_for("business.desk"))


def _refused(exc: ServiceError):
    flash(str(exc), "error")
    return desk(exc.status)


@business_pages.route("/business/prices", methods=["POST"])
@provider_view("admin")
def publish_price():
    try:
        program = (request.form.get("program") or "").strip()
        prices = {name: _int(name) for name in catalogue.MONEY_FIELDS + catalogue.COUNT_FIELDS}
        catalogue.publish(program, _date("effective_from", local_today()),
                          per_seat=request.form.get("per_seat") == "on", **prices)
    except ServiceError as exc:
        return _refused(exc)
    return _done(f"Prices of {program} published.")


@business_pages.route("/business/contracts", methods=["POST"])
@provider_view("admin")
def create_contract():
    try:
        lines = [(p, _int(f"seats_{p}")) for p in sorted(KNOWN_PROGRAMS) if request.form.get(f"program_{p}") == "on"]
        contract = contracts.create(_account(), lines, starts_on=_date("starts_on"), ends_on=_date("ends_on"),
                                    renewal=request.form.get("renewal") or "manual", actor_id=g.principal.user_id)
    except ServiceError as exc:
        return _refused(exc)
    return _done(f"Contract {contract.id} drafted for {contract.account.name}.")


@business_pages.route("/business/changes", methods=["POST"])
@provider_view("admin")
def schedule_change():
    try:
        contract = _contract()
        change = schedule.schedule(contract.account, request.form.get("kind") or "", _date("effective_on"),
                                   contract=contract, program=request.form.get("program") or None,
                                   value=request.form.get("value") or None, actor_id=g.principal.user_id)
        if change.effective_on <= local_today():
            schedule.apply_one(change.id)
    except ServiceError as exc:
        return _refused(exc)
    return _done(f"Change scheduled for {change.effective_on}.")


@business_pages.route("/business/changes/cancel", methods=["POST"])
@provider_view("admin")
def cancel_change():
    change = ScheduledChange.get_or_none(ScheduledChange.id == request.form.get("change_id", type=int))
    if change is None or not schedule.cancel(change):
        flash("That change has already applied or was cancelled.", "error")
        return redirect(url_for("business.desk"))
    return _done("Change cancelled.")


@business_pages.route("/business/billing-runs", methods=["POST"])
@provider_view("admin")
def billing_run():
    try:
        start, end = month_bounds(_date("month"))
    except ServiceError as exc:
        return _refused(exc)
    biz = settings()["business"]
    made = invoicing.run(start, end, currency=biz["currency"], discounts=biz["partner_discounts"])
    return _done(f"{len(made)} draft invoice(s) for {start:%B %Y}.")


@business_pages.route("/business/invoices/issue", methods=["POST"])
@provider_view("admin")
def issue_invoice():
    invoice = Invoice.get_or_none(Invoice.id == request.form.get("invoice_id", type=int))
    if invoice is None:
        abort(404)
    try:
        invoice = invoicing.issue(invoice)
    except ServiceError as exc:
        return _refused(exc)
    return _done(f"Invoice {invoice.number} issued.")


@business_pages.route("/business/payments", methods=["POST"])
@provider_view("admin")
def record_payment():
    try:
        payment = invoicing.record_payment(_account(), _int("amount_minor", 1), _date("received_on", local_today()),
                                           request.form.get("reference") or "", actor_id=g.principal.user_id)
    except ServiceError as exc:
        return _refused(exc)
    return _done(f"Payment of {money(payment.amount_minor)} recorded.")


# -- the account's control panel ------------------------------------------------------------

def _paying_account(tenant: Tenant) -> Tenant | None:
    """Sub-accounts are billed through their account (their admins see their own usage only);
    the provider pays nobody (None)."""
    if tenant.level == PROVIDER:
        return None
    return tenant if tenant.level == ACCOUNT else Tenant.get_by_id(tenant.parent_id)


def _usage_range() -> tuple[dt.date, dt.date]:
    first, _ = month_bounds(local_today())
    start = _date("from", first)
    end = _date("to", local_today() + dt.timedelta(days=1))
    if end <= start or (end - start).days > 400:
        raise ServiceError("from/to: a range of 1 to 400 days, 'to' exclusive", 422)
    return start, end


def _filter(tenant: Tenant) -> Tenant | None:
    wanted = request.args.get("tenant", type=int)
    if not wanted:
        return None
    for t in usage.subtree(tenant):
        if t.id == wanted:
            return t
    abort(404)  # a tenant outside this subtree: as if it did not exist
    return None


@business_pages.route("/t/<id:tenant_id>/billing")
@tenant_view("admin")
def panel(tenant):
    account = _paying_account(tenant)
    if account is None:
        return redirect(url_for("business.desk"))
    try:
        start, end = _usage_range()
    except ServiceError as exc:
        flash(str(exc), "error")
        start, end = month_bounds(local_today())
    only = _filter(tenant)
    metered = usage.rows(tenant, start, end, only)
    own = account.id == tenant.id
    contract = contracts.active_contract(account)
    return render_template(
        "business/panel.html", tenant=tenant, account=account, own=own, contract=contract,
        lines=list(contract.lines) if contract else [], titles=PROGRAM_TITLES,
        changes=list(schedule.pending(account)) if own else [],
        start=start, end=end, only=only, subtree=usage.subtree(tenant), metered=metered,
        chart=usage.bar_chart_svg(usage.daily_totals(metered, start, end)),
        invoices=list(account.invoices.where(Invoice.status == "issued").order_by(Invoice.number.desc()))
        if own else [],
        statement=invoicing.statement(account, *month_bounds(local_today())) if own else None,
        notifications=list(Notification.select().where(Notification.tenant == tenant.id)
                           .order_by(Notification.id.desc()).limit(20)),
        seats={"total": quotas.contract_seats(account), "used": quotas.seats_used(account, subtree=True),
               "quotas": quotas.quotas(account)} if own else None,
        is_provider_admin=is_provider_admin(g.principal))


@business_pages.route("/t/<id:tenant_id>/billing/quotas", methods=["POST"])
@tenant_view("admin")
def set_quota(tenant):
    """The account's admin shares the contract's seats among its sub-accounts."""
    try:
        if tenant.level != ACCOUNT:
            raise ServiceError("seat quotas are set by the account's admins", 422)
        sub = Tenant.get_or_none(Tenant.id == _int("sub_id"))
        if sub is None or not sub.is_descendant_of(tenant):
            abort(404)
        # An empty field removes the quota: the sub-account then shares what the others leave.
        seats = None if not (request.form.get("seats") or "").strip() else _int("seats")
        quotas.set_quota(tenant, sub, seats, actor_id=g.principal.user_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Seat quota of {sub.name} saved.", "info")
    return redirect(url_for("business.panel", tenant_id=tenant.id))


@business_pages.route("/t/<id:tenant_id>/billing/usage.csv")
@tenant_view("admin")
def usage_csv(tenant):
    try:
        start, end = _usage_range()
    except ServiceError as exc:
        abort(422, description=str(exc))
    text = usage.as_csv(usage.rows(tenant, start, end, _filter(tenant)), bom=request.args.get("bom") == "1")
    return Response(text, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="usage-{tenant.slug}-{start}-{end}.csv"'})


def _invoice_of(tenant: Tenant) -> Invoice:
    number = request.args.get("number", type=int)
    if not number:
        abort(400, description="number: which invoice, e.g. ?number=12")
    invoice = Invoice.get_or_none(Invoice.account == tenant.id, Invoice.number == number, Invoice.status == "issued")
    if invoice is None or tenant.level != ACCOUNT:
        abort(404)
    return invoice


@business_pages.route("/t/<id:tenant_id>/billing/invoice")
@tenant_view("admin")
def invoice_page(tenant):
    invoice = _invoice_of(tenant)
    return render_template("business/invoice.html", tenant=tenant, invoice=invoice, lines=list(invoice.lines))


@business_pages.route("/t/<id:tenant_id>/billing/invoice.csv")
@tenant_view("admin")
def invoice_csv(tenant):
    invoice = _invoice_of(tenant)
    return Response(invoicing.invoice_csv(invoice), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="invoice-{invoice.number}.csv"'})


# -- applications for service ---------------------------------------------------------------

def _lines_from_form() -> str:
    """The programs ticked on a form, as "program:seats,..."."""
    picked = [f"{p}:{(request.form.get(f'seats_{p}') or '0').strip()}" for p in sorted(KNOWN_PROGRAMS)
              if request.form.get(f"program_{p}") == "on"]
    return request.form.get("lines") or ",".join(picked)


@business_pages.route("/apply", methods=["GET", "POST"])
def apply_public():
    """The provider's public application form: a quote first, then the application."""
    biz = settings()["business"]
    if not biz["public_applications"]:
        abort(404)
    on = local_today()
    quote, status = None, 200
    if request.method == "POST":
        try:
            lines_text = _lines_from_form()
            starts_on = _date("starts_on", on)
            if request.form.get("action") == "quote":
                quote = catalogue.quote(applications.parse_lines(lines_text), starts_on)
            else:
                applications.apply(lines_text=lines_text, starts_on=starts_on, company=request.form.get("company"),
                                   name=request.form.get("name"), email=request.form.get("email"),
                                   address=(current_app.secret_key.encode() if isinstance(current_app.secret_key, str)
                                            else current_app.secret_key, request.remote_addr or "unknown"),
                                   per_hour=biz["public_applications_per_hour"], today=on)
                return render_template("business/applied.html"), 201
        except ServiceError as exc:
            flash(str(exc), "error")
            status = exc.status
    return render_template("business/apply.html", programs=sorted(KNOWN_PROGRAMS), titles=PROGRAM_TITLES,
                           prices={p.program: p for p in catalogue.price_list(on)}, today=on, quote=quote,
                           form=request.form), status


@business_pages.route("/t/<id:tenant_id>/billing/apply", methods=["POST"])
@tenant_view("admin")
def apply_account(tenant):
    """An account admin asks for programs or seats: an application the provider reviews."""
    try:
        if tenant.level != ACCOUNT:
            raise ServiceError("only accounts apply; a sub-account's admin asks its account", 422)
        applications.apply(lines_text=_lines_from_form(), starts_on=_date("starts_on", local_today()), account=tenant,
                           actor_id=g.principal.user_id, today=local_today())
    except ServiceError as exc:
        flash(str(exc), "error")
        return redirect(url_for("business.panel", tenant_id=tenant.id))
    flash("Your request was sent to the provider.", "info")
    return redirect(url_for("business.panel", tenant_id=tenant.id))


@business_pages.route("/business/applications")
@provider_view("admin")
def application_list():
    rows = list(Application.select().order_by(Application.state != "submitted", Application.id.desc()).limit(300))
    return render_template("business/applications.html", rows=rows)


def _application() -> Application:
    wanted = request.values.get("id", type=int)
    if not wanted:
        abort(400, description="id: which application, e.g. ?id=12")
    row = Application.get_or_none(Application.id == wanted)
    if row is None:
        abort(404)
    return row


@business_pages.route("/business/application")
@provider_view("admin")
def application_page(status: int = 200):
    row = _application()
    return render_template("business/application.html", app_row=row, comments=list(row.comments),
                           quote=catalogue.quote(applications.parse_lines(row.lines), row.starts_on)
                           if row.state == "submitted" else None), status


@business_pages.route("/business/application", methods=["POST"])
@provider_view("admin")
def application_action():
    row, action = _application(), request.form.get("action")
    actor = g.principal.user_id
    try:
        if action == "comment":
            applications.comment(row, request.form.get("body") or "", actor_id=actor)
        elif action == "change":
            applications.change_lines(row, request.form.get("lines") or "", actor_id=actor)
        elif action == "accept":
            applications.accept(row, actor_id=actor, today=local_today(),
                                renewal=request.form.get("renewal") or "manual")
        elif action == "decline":
            applications.decline(row, actor_id=actor)
        else:
            raise ServiceError("action: comment, change, accept or decline", 400)
    except ServiceError as exc:
        flash(str(exc), "error")
        return application_page(exc.status)
    flash(f"Application {row.id}: {action} done.", "info")
    return redirect(url_for("business.application_page", id=row.id))
