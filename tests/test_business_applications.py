"""Applications for service: the public form with its per-address limit, review, accept and decline."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from appliance.web.business import applications, catalogue
from appliance.web.business.models import Application, Contract, ScheduledChange
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError
from tests.helpers import csrf_token, login

TODAY = dt.date(2030, 4, 17)


@pytest.fixture
def priced(world):
    catalogue.publish("webchat", dt.date(2030, 1, 1), monthly_fee_minor=2000, setup_fee_minor=5000)
    return world


def _form(client, **fields):
    token = csrf_token(client, "/apply")
    return client.post("/apply", data={"csrf_token": token, **fields}, environ_base={"REMOTE_ADDR": "203.0.113.9"})


def test_public_form_quotes_applies_and_limits_each_address(app, client, priced):
    quote = _form(client, company="Northwind Bank", name="Nora North", email="nora@northwind.example",
                  program_webchat="on", seats_webchat="3", action="quote")
    assert quote.status_code == 200 and "60.00 EUR" in quote.get_data(as_text=True)
    for _ in range(5):
        assert _form(client, company="Northwind Bank", name="Nora North", email="nora@northwind.example",
                     program_webchat="on", seats_webchat="3", action="apply").status_code == 201
    sixth = _form(client, company="Northwind Bank", name="N", email="n@northwind.example", program_webchat="on",
                  seats_webchat="3", action="apply")
    assert sixth.status_code == 429 and "Too many applications" in sixth.get_data(as_text=True)
    missing = client.post("/apply", data={"csrf_token": csrf_token(client, "/apply"), "company": "X",
                                          "program_webchat": "on", "seats_webchat": "1", "action": "apply"},
                          environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert missing.status_code == 422 and "name: required" in missing.get_data(as_text=True)
    row = Application.select().first()
    assert row.lines == "webchat:3" and row.quote_monthly_minor == 6000 and row.account_id is None
    assert "203.0.113.9" not in (row.address_key or "")


def test_applicant_details_are_encrypted_at_rest(app, priced, app_context):
    applications.apply(lines_text="webchat:2", starts_on=TODAY, company="Contoso Savings", name="Carla Secret",
                       email="carla.secret@contoso.example", today=TODAY)
    raw = Application._meta.database.execute_sql("SELECT company, applicant_name, applicant_email FROM application")
    blob = b"".join(bytes(v) for v in raw.fetchone())
    for text in (b"Contoso", b"Carla Secret", b"carla.secret"):
        assert text not in blob
    assert Application.get().applicant_name == "Carla Secret"


def test_manager_changes_accepts_newcomer_into_an_account_with_a_future_start(app, priced, app_context):
    row = applications.apply(lines_text="webchat:2", starts_on=TODAY + dt.timedelta(days=14), company="Fabrikam",
                             name="Fay", email="fay@fabrikam.example", today=TODAY)
    row = applications.change_lines(row, "webchat:4", actor_id=None)
    assert row.quote_monthly_minor == 8000
    accepted = applications.accept(row, actor_id=None, today=TODAY)
    account = Tenant.get_by_id(accepted.account_id)
    assert account.name == "Fabrikam" and account.level == 2
    contract = Contract.get_by_id(accepted.contract_id)
    assert contract.status == "draft"  # it starts in two weeks: a scheduled activation
    change = ScheduledChange.get(ScheduledChange.contract == contract.id)
    assert (change.kind, change.value, change.effective_on) == ("set_status", "active", TODAY + dt.timedelta(days=14))
    with pytest.raises(ServiceError, match="accepted already"):
        applications.decline(accepted, actor_id=None)


def test_bad_lines_are_refused_with_the_format(app, priced):
    for text, reason in (("", "name 1 to"), ("webchat", "whole number"), ("teleport:3", "unknown program"),
                         ("webchat:1,webchat:2", "each once")):
        with pytest.raises(ServiceError, match=reason):
            applications.parse_lines(text)


def test_account_admin_request_becomes_an_application_the_manager_sees(app, client, priced):
    a = priced.tenants["A"]
    login(client, priced.email("A", "admin"))
    token = csrf_token(client, f"/t/{a.id}/billing")
    assert client.post(f"/t/{a.id}/billing/apply", data={"csrf_token": token, "lines": "webchat:5"}).status_code == 302
    assert Application.get().account_id == a.id
    login(client, priced.email("P", "admin"))
    listing = client.get("/business/applications").get_data(as_text=True)
    assert "Tenant A" in listing and "webchat:5" in listing
    application_id = re.search(r"/business/application\?id=(\d+)", listing).group(1)
    token = csrf_token(client, f"/business/application?id={application_id}")
    done = client.post("/business/application", data={"csrf_token": token, "id": application_id, "action": "accept"})
    assert done.status_code == 302
    assert Contract.get(Contract.account == a.id).status == "active"


def test_the_api_applies_reviews_and_accepts_into_a_contract(app, client, priced):
    from appliance.web.services.licence import assign_program

    a = priced.tenants["A"]
    with app.app_context():
        assign_program(a, "api")
    account_admin, manager = priced.headers("A", "admin"), priced.headers("P", "admin")
    made = client.post(f"/api/v1/tenants/{a.id}/applications", headers=account_admin,
                       json={"lines": "webchat:3", "starts_on": TODAY.isoformat()})
    assert made.status_code == 201, made.get_json()
    app_id = made.get_json()["id"]
    assert made.get_json()["quote_monthly_minor"] == 6000 and made.get_json()["state"] == "submitted"
    bad = client.post(f"/api/v1/tenants/{a.id}/applications", headers=account_admin, json={"lines": "webchat"})
    assert bad.status_code == 422 and "webchat:10" in bad.get_json()["message"]

    # Another account's admin neither sees nor reviews it; the manager does both.
    assert client.get(f"/api/v1/tenants/{a.id}/applications", headers=priced.headers("B", "admin")).status_code \
        in (403, 404)
    assert client.post("/api/v1/business/applications/review", headers=account_admin,
                       json={"id": app_id, "action": "accept"}).status_code == 403
    listed = client.get("/api/v1/business/applications", headers=manager).get_json()["applications"]
    assert listed[0]["id"] == app_id
    review = "/api/v1/business/applications/review"
    assert client.post(review, headers=manager, json={"id": app_id, "action": "comment",
                                                      "body": "Five seats?"}).status_code == 200
    changed = client.post(review, headers=manager, json={"id": app_id, "action": "change", "lines": "webchat:5"})
    assert changed.get_json()["quote_monthly_minor"] == 10000
    accepted = client.post(review, headers=manager, json={"id": app_id, "action": "accept", "renewal": "auto"})
    assert accepted.status_code == 200 and accepted.get_json()["state"] == "accepted"
    with app.app_context():
        contract = Contract.get_by_id(accepted.get_json()["contract_id"])
        assert contract.account_id == a.id and contract.status == "active" and contract.renewal == "auto"
    again = client.post(review, headers=manager, json={"id": app_id, "action": "decline"})
    assert again.status_code == 409 and "accepted already" in again.get_json()["message"]
    assert client.post(review, headers=manager, json={"id": 999999, "action": "decline"}).status_code == 404
    own = client.get(f"/api/v1/tenants/{a.id}/applications", headers=account_admin).get_json()["applications"]
    assert [(x["id"], x["state"]) for x in own] == [(app_id, "accepted")]
