"""The business layer under /api/v1: what the pages do, for the customer's and the provider's systems.

Account routes need an admin of the tenant in the URL (``@spec``); provider routes an admin
of the provider. Objects named in bodies or query strings are looked up inside the URL's
tenant, so they cannot reach another tenant's rows.
"""

from __future__ import annotations

import datetime as dt

from flask import Response, current_app, g, jsonify, request

from appliance.core.calendar import today, zone
from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.business import applications, catalogue, contracts, invoicing, quotas, schedule, usage
from appliance.web.business.billing import month_bounds
from appliance.web.business.models import CHANGE_KINDS, CONTRACT_STATUSES, RENEWALS, Application, Contract, Invoice
from appliance.web.models.tenancy import ACCOUNT, PROVIDER, Tenant
from appliance.web.services import ServiceError
from appliance.web.validation import F

DATE = {"max_length": 10, "description": "YYYY-MM-DD in the installation's calendar"}


def _settings() -> dict:
    return current_app.extensions["appliance_instance"].settings


def _day(value: str | None, name: str, default: dt.date | None = None) -> dt.date:
    if not value:
        if default is None:
            raise ServiceError(f"{name}: a date like 2031-02-01 is required", 422)
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ServiceError(f"{name} must be a date like 2031-02-01", 422) from None


def _price_json(p) -> dict:
    return {"program": p.program, "effective_from": p.effective_from.isoformat(), "per_seat": p.per_seat,
            **{name: getattr(p, name) for name in catalogue.MONEY_FIELDS + catalogue.COUNT_FIELDS}}


def _contract_json(c: Contract) -> dict:
    return {"id": c.id, "account_id": c.account_id, "status": c.status, "starts_on": c.starts_on.isoformat(),
            "ends_on": c.ends_on.isoformat(), "renewal": c.renewal,
            "lines": [{"program": line.program, "seats": line.seats, "per_seat": line.per_seat,
                       "monthly_fee_minor": line.monthly_fee_minor, "setup_fee_minor": line.setup_fee_minor}
                      for line in c.lines]}


def _change_json(ch) -> dict:
    return {"id": ch.id, "account_id": ch.account_id, "contract_id": ch.contract_id, "kind": ch.kind,
            "program": ch.program, "value": ch.value, "effective_on": ch.effective_on.isoformat(), "state": ch.state,
            "applied_at": ch.applied_at.isoformat() + "Z" if ch.applied_at else None, "outcome": ch.outcome}


def _invoice_json(inv: Invoice, lines: bool = False) -> dict:
    out = {"id": inv.id, "number": inv.number, "kind": inv.kind, "status": inv.status,
           "period_start": inv.period_start.isoformat(), "period_end": inv.period_end.isoformat(),
           "total_minor": inv.total_minor, "currency": inv.currency}
    if lines:
        out["lines"] = [{"tenant_id": line.tenant_id, "description": line.description, "quantity": line.quantity,
                         "unit_price_minor": line.unit_price_minor, "amount_minor": line.amount_minor}
                        for line in inv.lines]
    return out


def _account_of(tenant: Tenant) -> Tenant | None:
    """The account that pays for ``tenant`` (itself, or a sub-account's parent); None for the provider."""
    if tenant.level == PROVIDER:
        return None
    return tenant if tenant.level == ACCOUNT else Tenant.get_by_id(tenant.parent_id)


def _own_account(tenant: Tenant) -> Tenant:
    if tenant.level != ACCOUNT:
        raise ServiceError("invoices, statements and seat quotas belong to accounts (level 2); sub-accounts "
                           "are billed through their account", 422)
    return tenant


# -- catalogue (provider) --------------------------------------------------------------------

@api.route("/business/prices")
@spec("The price list in effect today (provider admins)", role="admin", scope="provider", tag="business",
      response=R.BUSINESS_PRICES)
def business_prices():
    on = today(zone(_settings()))
    return jsonify(prices=[_price_json(p) for p in catalogue.price_list(on)],
                   currency=_settings()["business"]["currency"])


PRICE_BODY = {
    "program": F("string", required=True, max_length=32),
    "effective_from": F("string", required=True, **DATE),
    "per_seat": F("boolean"),
    **{name: F("integer", description="minor units (cents)") for name in catalogue.MONEY_FIELDS},
    **{name: F("integer") for name in catalogue.COUNT_FIELDS},
}


@api.route("/business/prices", methods=["POST"])
@spec("Publish a program's prices from a date on (provider admins)", role="admin", scope="provider",
      body=PRICE_BODY, tag="business", status=201, response=R.BUSINESS_PRICE)
def business_publish(data):
    prices = {k: data.get(k, 0) for k in catalogue.MONEY_FIELDS + catalogue.COUNT_FIELDS}
    row = catalogue.publish(data["program"], _day(data["effective_from"], "effective_from"),
                            per_seat=data.get("per_seat", True), **prices)
    return jsonify(_price_json(row)), 201


# -- contracts and changes ------------------------------------------------------------------

@api.route("/tenants/<id:tenant_id>/contracts")
@spec("An account's contracts (its admins; sub-accounts see their account's)", role="admin", tag="business",
      response=R.BUSINESS_CONTRACTS)
def business_contracts(tenant):
    account = _account_of(tenant)
    rows = [] if account is None else account.contracts.order_by(Contract.id)
    return jsonify(contracts=[_contract_json(c) for c in rows])


CONTRACT_BODY = {
    "starts_on": F("string", required=True, **DATE),
    "ends_on": F("string", required=True, **DATE),
    "renewal": F("string", enum=RENEWALS),
    "program": F("string", required=True, max_length=32, description="the first program; add more with /lines"),
    "seats": F("integer", required=True),
}


@api.route("/tenants/<id:tenant_id>/contracts", methods=["POST"])
@spec("Draft a contract for an account at today's prices (provider admins)", role="admin", scope="provider",
      body=CONTRACT_BODY, tag="business", status=201, response=R.BUSINESS_CONTRACT)
def business_contract_create(tenant, data):
    contract = contracts.create(tenant, [(data["program"], data["seats"])],
                                starts_on=_day(data["starts_on"], "starts_on"),
                                ends_on=_day(data["ends_on"], "ends_on"), renewal=data.get("renewal", "manual"),
                                actor_id=g.principal.user_id)
    return jsonify(_contract_json(contract)), 201


CHANGE_BODY = {
    "contract_id": F("integer", required=True),
    "kind": F("string", required=True, enum=CHANGE_KINDS),
    "program": F("string", max_length=32, nullable=True),
    "value": F("string", max_length=40, nullable=True,
               description=f"seats, or a status ({', '.join(CONTRACT_STATUSES)})"),
    "effective_on": F("string", required=True, **DATE),
}


@api.route("/tenants/<id:tenant_id>/changes")
@spec("Pending future-dated changes of an account", role="admin", tag="business", response=R.BUSINESS_CHANGES)
def business_changes(tenant):
    account = _account_of(tenant)
    return jsonify(changes=[] if account is None else [_change_json(c) for c in schedule.pending(account)])


@api.route("/tenants/<id:tenant_id>/changes", methods=["POST"])
@spec("Schedule a change for a date; due today or earlier applies at once (provider admins)", role="admin",
      scope="provider", body=CHANGE_BODY, tag="business", status=201, response=R.BUSINESS_CHANGE)
def business_change_create(tenant, data):
    contract = Contract.get_or_none(Contract.id == data["contract_id"], Contract.account == tenant.id)
    if contract is None:
        raise ServiceError("contract_id: no such contract for this account", 422)
    change = schedule.schedule(tenant, data["kind"], _day(data["effective_on"], "effective_on"), contract=contract,
                               program=data.get("program"), value=data.get("value"), actor_id=g.principal.user_id)
    if change.effective_on <= today(zone(_settings())):
        schedule.apply_one(change.id)
    return jsonify(_change_json(type(change).get_by_id(change.id))), 201


# -- applications for service ---------------------------------------------------------------

APPLY_BODY = {
    "lines": F("string", required=True, max_length=400, description="programs and seats, e.g. webchat:10,email:1"),
    "starts_on": F("string", **DATE),
}
REVIEW_ACTIONS = ("comment", "change", "accept", "decline")
REVIEW_BODY = {
    "id": F("integer", required=True, description="the application"),
    "action": F("string", required=True, enum=REVIEW_ACTIONS),
    "body": F("string", max_length=4000, description="the comment (action comment)"),
    "lines": F("string", max_length=400, description="the new programs and seats (action change)"),
    "renewal": F("string", enum=RENEWALS, description="the contract's renewal (action accept)"),
}


def _application_json(a: Application) -> dict:
    return {"id": a.id, "account_id": a.account_id, "state": a.state, "lines": a.lines,
            "starts_on": a.starts_on.isoformat(), "quote_monthly_minor": a.quote_monthly_minor,
            "quote_setup_minor": a.quote_setup_minor, "contract_id": a.contract_id,
            "created_at": a.created_at.isoformat() + "Z"}


@api.route("/tenants/<id:tenant_id>/applications")
@spec("An account's applications for programs and seats, newest first", role="admin", tag="business",
      response=R.BUSINESS_APPLICATIONS)
def business_account_applications(tenant):
    account = _own_account(tenant)
    rows = Application.select().where(Application.account == account.id).order_by(Application.id.desc()).limit(200)
    return jsonify(applications=[_application_json(a) for a in rows])


@api.route("/tenants/<id:tenant_id>/applications", methods=["POST"])
@spec("Apply for programs and seats: the quote comes from the catalogue; the provider reviews it",
      role="admin", body=APPLY_BODY, tag="business", status=201, response=R.BUSINESS_APPLICATION)
def business_apply(tenant, data):
    on = today(zone(_settings()))
    row = applications.apply(lines_text=data["lines"], starts_on=_day(data.get("starts_on"), "starts_on", on),
                             account=_own_account(tenant), actor_id=g.principal.user_id, today=on)
    return jsonify(_application_json(row)), 201


@api.route("/business/applications")
@spec("Every application, open ones first (provider admins)", role="admin", scope="provider", tag="business",
      response=R.BUSINESS_APPLICATIONS)
def business_applications():
    rows = Application.select().order_by(Application.state != "submitted", Application.id.desc()).limit(300)
    return jsonify(applications=[_application_json(a) for a in rows])


@api.route("/business/applications/review", methods=["POST"])
@spec("Comment on, change, accept (making the contract) or decline an application (provider admins)",
      role="admin", scope="provider", body=REVIEW_BODY, tag="business", response=R.BUSINESS_APPLICATION)
def business_review(data):
    row = Application.get_or_none(Application.id == data["id"])
    if row is None:
        raise ServiceError("id: no such application", 404)
    actor, action = g.principal.user_id, data["action"]
    if action == "comment":
        applications.comment(row, data.get("body") or "", actor_id=actor)
    elif action == "change":
        row = applications.change_lines(row, data.get("lines") or "", actor_id=actor)
    elif action == "accept":
        row = applications.accept(row, actor_id=actor, today=today(zone(_settings())),
                                  renewal=data.get("renewal") or "manual")
    else:
        row = applications.decline(row, actor_id=actor)
    return jsonify(_application_json(Application.get_by_id(row.id)))


# -- seat quotas (the account's admins) -----------------------------------------------------

QUOTA_BODY = {
    "tenant_id": F("integer", required=True, description="one of the account's sub-accounts"),
    "seats": F("integer", required=True, nullable=True, description="its share of the contract's seats; "
                                                                     "null removes the quota"),
}


def _quotas_json(account: Tenant) -> dict:
    return {"account_id": account.id, "contract_seats": quotas.contract_seats(account),
            "used": quotas.seats_used(account, subtree=True),
            "quotas": [{"tenant_id": q["tenant"].id, "name": q["tenant"].name, "quota": q["quota"],
                        "used": q["used"]} for q in quotas.quotas(account)]}


@api.route("/tenants/<id:tenant_id>/seat-quotas")
@spec("The contract's seats, those in use, and each sub-account's quota", role="admin", tag="business",
      response=R.BUSINESS_QUOTAS)
def business_seat_quotas(tenant):
    return jsonify(_quotas_json(_own_account(tenant)))


@api.route("/tenants/<id:tenant_id>/seat-quotas", methods=["POST"])
@spec("Set (or with null remove) a sub-account's share of the contract's seats", role="admin", tag="business",
      body=QUOTA_BODY, response=R.BUSINESS_QUOTAS)
def business_seat_quota_set(tenant, data):
    account = _own_account(tenant)
    sub = Tenant.get_or_none(Tenant.id == data["tenant_id"])
    if sub is None or not sub.is_descendant_of(account):
        raise ServiceError("tenant_id: no such sub-account of this account", 404)
    quotas.set_quota(account, sub, data["seats"], actor_id=g.principal.user_id)
    return jsonify(_quotas_json(account))


# -- usage, invoices, statements ------------------------------------------------------------

USAGE_QUERY = {"from": F("string", **DATE), "to": F("string", **DATE), "format": F("string", enum=("json", "csv"))}


@api.route("/tenants/<id:tenant_id>/usage")
@spec("Metered usage per day of a tenant and its sub-accounts ('to' exclusive; default: month to date)",
      role="admin", tag="business", query=USAGE_QUERY, response=R.BUSINESS_USAGE)
def business_usage(tenant):
    on = today(zone(_settings()))
    start = _day(request.args.get("from"), "from", month_bounds(on)[0])
    end = _day(request.args.get("to"), "to", on + dt.timedelta(days=1))
    if end <= start or (end - start).days > 400:
        raise ServiceError("from/to: a range of 1 to 400 days, 'to' exclusive", 422)
    rows = usage.rows(tenant, start, end)
    if request.args.get("format") == "csv":
        return Response(usage.as_csv(rows), mimetype="text/csv")
    return jsonify(days=[{"day": str(r.day), "tenant_id": r.tenant_id, "conversations": r.conversations,
                          "messages_in": r.messages_in, "messages_out": r.messages_out,
                          "active_operators": r.active_operators, "seats": r.seats} for r in rows])


@api.route("/tenants/<id:tenant_id>/invoices")
@spec("Issued invoices and credit notes of an account, with their lines", role="admin", tag="business",
      response=R.BUSINESS_INVOICES)
def business_invoices(tenant):
    if tenant.level != ACCOUNT:
        return jsonify(invoices=[], billed_to=None if tenant.parent_id is None else tenant.parent_id)
    rows = tenant.invoices.where(Invoice.status == "issued").order_by(Invoice.number)
    return jsonify(invoices=[_invoice_json(inv, lines=True) for inv in rows])


@api.route("/tenants/<id:tenant_id>/statement")
@spec("An account's statement for a month: opening balance, documents, payments, closing balance",
      role="admin", tag="business", query={"month": F("string", **DATE)}, response=R.BUSINESS_STATEMENT)
def business_statement(tenant):
    account = _own_account(tenant)
    start, end = month_bounds(_day(request.args.get("month"), "month", today(zone(_settings()))))
    st = invoicing.statement(account, start, end)
    return jsonify(start=start.isoformat(), end=end.isoformat(), opening_minor=st.opening, closing_minor=st.closing,
                   entries=[{"date": d.isoformat(), "text": text, "amount_minor": a} for d, text, a in st.entries])


RUN_BODY = {"month": F("string", required=True, **DATE), "issue": F("boolean")}


@api.route("/business/billing-runs", methods=["POST"])
@spec("Draft (and optionally issue) every account's invoice for a month (provider admins)", role="admin",
      scope="provider", body=RUN_BODY, tag="business", status=201, response=R.BUSINESS_RUN)
def business_billing_run(data):
    start, end = month_bounds(_day(data["month"], "month"))
    biz = _settings()["business"]
    made = invoicing.run(start, end, currency=biz["currency"], discounts=biz["partner_discounts"])
    if data.get("issue"):
        made = [invoicing.issue(inv) for inv in made]
    return jsonify(invoices=[_invoice_json(inv) for inv in made]), 201


PAYMENT_BODY = {"amount_minor": F("integer", required=True), "received_on": F("string", required=True, **DATE),
                "reference": F("string", required=True, max_length=120)}


@api.route("/tenants/<id:tenant_id>/payments", methods=["POST"])
@spec("Record a payment received from an account (provider admins)", role="admin", scope="provider",
      body=PAYMENT_BODY, tag="business", status=201, response=R.BUSINESS_PAYMENT)
def business_payment(tenant, data):
    if tenant.level != ACCOUNT:
        raise ServiceError("payments are recorded for accounts (level 2)", 422)
    payment = invoicing.record_payment(tenant, data["amount_minor"], _day(data["received_on"], "received_on"),
                                       data["reference"], actor_id=g.principal.user_id)
    return jsonify(id=payment.id, amount_minor=payment.amount_minor), 201
