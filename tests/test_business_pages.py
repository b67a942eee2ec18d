"""The business layer through HTTP: the provider's desk, the account's control panel, the API.

Walks the provider's path (prices, a contract, a change for today, a billing run, issuing) and the
account admin's (usage chart, CSV, invoice page and CSV), then checks that another tenant's
invoice is a 404 and that bad input is a clear 4xx. The installation runs on its evaluation.
"""

from __future__ import annotations

import datetime as dt
import re

from appliance.core.calendar import zone
from appliance.web.business.models import Contract, Invoice
from appliance.web.services import contacts, conversations, metering
from tests.helpers import csrf_token, login

TODAY = dt.date(2030, 4, 17)  # tests.helpers.START


def _as(client, world, key, role="admin"):
    assert login(client, world.email(key, role)).status_code == 302
    return csrf_token(client, "/business" if key == "P" else f"/t/{world.tenants[key].id}/billing")


def _post(client, path, token, **form):
    return client.post(path, data={"csrf_token": token, **form})


def test_provider_desk_to_customer_invoice(app, client, world):
    a = world.tenants["A"]
    token = _as(client, world, "P")
    ok = _post(client, "/business/prices", token, program="webchat", effective_from="2030-01-01", per_seat="on",
               monthly_fee_minor="2000", setup_fee_minor="5000", included_conversations="0", included_messages="0",
               overage_conversation_minor="0", overage_message_minor="0")
    assert ok.status_code == 302
    refused = _post(client, "/business/prices", token, program="webchat", monthly_fee_minor="19.99")
    assert refused.status_code == 422 and "monthly_fee_minor must be a whole number" in refused.get_data(as_text=True)
    assert _post(client, "/business/contracts", token, account_id=str(a.id), starts_on="2030-04-01",
                 ends_on="2031-04-01", renewal="auto", program_webchat="on", seats_webchat="4").status_code == 302
    contract = Contract.get(Contract.account == a.id)
    # Activation dated today applies at once; seats from the 16th, scheduled.
    assert _post(client, "/business/changes", token, contract_id=str(contract.id), kind="set_status", value="active",
                 effective_on="2030-04-01").status_code == 302
    assert Contract.get_by_id(contract.id).status == "active"
    assert _post(client, "/business/changes", token, contract_id=str(contract.id), kind="set_seats",
                 program="webchat", value="6", effective_on="2030-05-01").status_code == 302
    desk = client.get("/business").get_data(as_text=True)
    assert "2030-05-01" in desk and "set_seats webchat 6" in desk
    assert _post(client, "/business/billing-runs", token, month="2030-04-01").status_code == 302
    invoice = Invoice.get(Invoice.account == a.id)
    assert invoice.total_minor == 5000 + 4 * 2000
    assert _post(client, "/business/invoices/issue", token, invoice_id=str(invoice.id)).status_code == 302
    assert _post(client, "/business/payments", token, account_id=str(a.id), amount_minor="13000",
                 received_on="2030-04-20", reference="SEPA 42").status_code == 302

    # Traffic to meter, then the account admin's panel.
    contact = contacts.create_contact(world.tenants["A1"], name="=HYPERLINK(\"x\")")
    conversations.start_conversation(world.objects["A1"]["channel"], world.tenants["A1"], contact, "hello")
    metering.record_day(TODAY, zone({"timezone": "UTC"}))
    client.get("/logout")
    _as(client, world, "A")
    page = client.get(f"/t/{a.id}/billing?from=2030-04-01&to=2030-05-01").get_data(as_text=True)
    assert "<svg" in page and "Tenant A1" in page and "From 2030-05-01: set seats webchat 6" in page
    assert f"{(5000 + 8000) / 100:.2f}" in page  # the invoice total
    number = invoice.number or Invoice.get_by_id(invoice.id).number
    printable = client.get(f"/t/{a.id}/billing/invoice?number={number}")
    assert printable.status_code == 200 and "webchat: setup" in printable.get_data(as_text=True)
    lines = client.get(f"/t/{a.id}/billing/invoice.csv?number={number}").get_data(as_text=True)
    assert lines.startswith("invoice,kind,") and "\r\n" in lines and ",5000," in lines
    csv_bom = client.get(f"/t/{a.id}/billing/usage.csv?from=2030-04-17&to=2030-04-18&bom=1")
    text = csv_bom.get_data().decode("utf-8")
    assert text.startswith("\ufeffday,tenant,") and csv_bom.headers["Content-Disposition"].startswith("attachment")
    filtered = client.get(f"/t/{a.id}/billing/usage.csv?from=2030-04-17&to=2030-04-18"
                          f"&tenant={world.tenants['A1'].id}").get_data(as_text=True)
    rows = filtered.strip().split("\r\n")
    assert len(rows) == 2 and rows[1].startswith("2030-04-17,Tenant A1,2,2,0")  # world's and ours


def test_another_tenants_invoice_and_subtree_are_404(app, client, world):
    b = world.tenants["B"]
    invoice = Invoice.create(account=b, period_start=TODAY, period_end=TODAY + dt.timedelta(days=30), currency="EUR",
                             total_minor=100, status="issued", number=77)
    _as(client, world, "A")
    a = world.tenants["A"]
    assert client.get(f"/t/{a.id}/billing/invoice?number={invoice.number}").status_code == 404
    assert client.get(f"/t/{b.id}/billing/invoice?number={invoice.number}").status_code == 404
    assert client.get(f"/t/{a.id}/billing/usage.csv?tenant={world.tenants['B1'].id}").status_code == 404
    assert client.get(f"/t/{a.id}/billing/invoice").status_code == 400
    assert client.get(f"/t/{a.id}/billing/usage.csv?from=2030-05-01&to=2030-04-01").status_code == 422
    client.get("/logout")
    login(client, world.email("A", "supervisor"))
    assert client.get(f"/t/{a.id}/billing").status_code == 403


def test_business_api_round_trip(client, world):
    p, a = world.headers("P", "admin"), world.headers("A", "admin")
    aid = world.tenants["A"].id
    assert client.post("/api/v1/business/prices", json={"program": "email", "effective_from": "2030-01-01",
                                                        "per_seat": False, "monthly_fee_minor": 9900},
                       headers=p).status_code == 201
    assert client.post("/api/v1/business/prices", json={"program": "email", "effective_from": "2030-01-01",
                                                        "monthly_fee_minor": 99.0}, headers=p).status_code == 422
    assert client.post("/api/v1/business/prices", json={"program": "email", "effective_from": "2030-01-01"},
                       headers=a).status_code == 403
    made = client.post(f"/api/v1/tenants/{aid}/contracts", json={"starts_on": "2030-04-01", "ends_on": "2031-04-01",
                                                                   "program": "email", "seats": 1}, headers=p)
    assert made.status_code == 201, made.get_data(as_text=True)
    contract_id = made.get_json()["id"]
    bad = client.post(f"/api/v1/tenants/{aid}/changes", json={"contract_id": contract_id, "kind": "set_status",
                                                               "value": "paused", "effective_on": "2030-04-01"},
                      headers=p)
    assert bad.status_code == 422 and "value" in bad.get_json()["message"]
    other = client.post(f"/api/v1/tenants/{world.tenants['B'].id}/changes",
                        json={"contract_id": contract_id, "kind": "set_status", "value": "active",
                              "effective_on": "2030-04-01"}, headers=p)
    assert other.status_code == 422 and "no such contract" in other.get_json()["message"]
    applied = client.post(f"/api/v1/tenants/{aid}/changes", json={"contract_id": contract_id, "kind": "set_status",
                                                                   "value": "active", "effective_on": "2030-04-01"},
                          headers=p)
    assert applied.get_json()["state"] == "applied"
    run = client.post("/api/v1/business/billing-runs", json={"month": "2030-04-01", "issue": True}, headers=p)
    assert run.status_code == 201
    (issued,) = [i for i in run.get_json()["invoices"] if i["total_minor"] == 9900]
    assert issued["number"] >= 1 and issued["status"] == "issued"
    assert client.post(f"/api/v1/tenants/{aid}/payments", json={"amount_minor": 9900, "received_on": "2030-04-20",
                                                                  "reference": "SEPA 7"}, headers=p).status_code == 201
    mine = client.get(f"/api/v1/tenants/{aid}/invoices", headers=a).get_json()["invoices"]
    assert [i["number"] for i in mine] == [issued["number"]] and mine[0]["lines"][0]["amount_minor"] == 9900
    st = client.get(f"/api/v1/tenants/{aid}/statement?month=2030-04-01", headers=a).get_json()
    assert st["closing_minor"] == 0 and [e["amount_minor"] for e in st["entries"]] == [9900, -9900]
    assert client.get(f"/api/v1/tenants/{world.tenants['B'].id}/invoices", headers=a).status_code == 404
    sub = client.get(f"/api/v1/tenants/{world.tenants['A1'].id}/invoices", headers=world.headers("A1", "admin"))
    assert sub.get_json() == {"invoices": [], "billed_to": aid}
    usage = client.get(f"/api/v1/tenants/{aid}/usage?from=2030-04-01&to=2030-04-30", headers=a)
    assert usage.status_code == 200 and usage.get_json()["days"] == []  # metering has not run
    assert re.match(r"^day,tenant", client.get(f"/api/v1/tenants/{aid}/usage?format=csv", headers=a)
                    .get_data(as_text=True))
