"""Seats under a contract: the account's total caps memberships in its whole subtree, and
the account's admins share it among sub-accounts with quotas (service, page and API)."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.web.business import contracts, quotas
from appliance.web.business.quotas import SeatQuotaError
from appliance.web.models.tenancy import User
from appliance.web.services import ServiceError, tenants
from tests import test_business_contracts as contracts_tests
from tests.helpers import PASSWORD, csrf_token, login

signer, app, ctx = contracts_tests.signer, contracts_tests.app, contracts_tests.ctx  # a licensed world
START = dt.date(2030, 1, 1)  # the ctx fixture's prices hold from then


def contract_for(account, seats):
    contract = contracts.create(account, [("webchat", seats)], starts_on=START, ends_on=dt.date(2031, 1, 1))
    contracts.set_status(contract, "active", on=START)
    return contract


def newcomer(n):
    return User.create(email=f"new{n}@example.test", name=f"New {n}", password_hash="x")


def test_without_a_contract_only_the_licence_caps_seats(ctx):
    a = ctx.tenants["A"]
    assert quotas.contract_seats(a) is None
    tenants.add_member(a, newcomer(1), "agent")  # no contract: nothing but the licence to say no


def test_the_contract_caps_members_of_the_account_and_its_sub_accounts(ctx):
    a, a1 = ctx.tenants["A"], ctx.tenants["A1"]
    used = quotas.seats_used(a, subtree=True)
    assert used == 9  # admin, supervisor and agent in A, A1 and A2 (hand-counted from the world)
    contract_for(a, used + 1)
    tenants.add_member(a1, newcomer(1), "agent")  # the last seat
    with pytest.raises(SeatQuotaError, match=rf"holds {used + 1} operator seats and {used + 1} are in use"):
        tenants.add_member(ctx.tenants["A2"], newcomer(2), "agent")
    tenants.add_member(ctx.tenants["B"], newcomer(3), "agent")  # another account's contract is not A's


def test_a_quota_caps_its_sub_account_and_quotas_stay_within_the_contract(ctx):
    a, a1, a2 = ctx.tenants["A"], ctx.tenants["A1"], ctx.tenants["A2"]
    contract_for(a, 20)
    quotas.set_quota(a, a1, 3)  # exactly its members today
    with pytest.raises(SeatQuotaError, match="A1 may hold 3 of the contract's seats and has 3 members"):
        tenants.add_member(a1, newcomer(1), "agent")
    tenants.add_member(a2, newcomer(2), "agent")  # no quota: shares what is left

    with pytest.raises(SeatQuotaError, match="at most 17 are left for Tenant A2"):
        quotas.set_quota(a, a2, 18)
    quotas.set_quota(a, a2, 17)
    quotas.set_quota(a, a1, None)  # removed: A1 shares the rest again
    tenants.add_member(a1, newcomer(3), "agent")
    assert {q["tenant"].id: (q["quota"], q["used"]) for q in quotas.quotas(a)} == {a1.id: (None, 4),
                                                                                  a2.id: (17, 4)}


def test_quotas_need_a_contract_and_one_of_the_accounts_own_sub_accounts(ctx):
    a, b1 = ctx.tenants["A"], ctx.tenants["B1"]
    with pytest.raises(ServiceError, match="no active contract"):
        quotas.set_quota(a, ctx.tenants["A1"], 2)
    contract_for(a, 20)
    with pytest.raises(ServiceError) as refused:
        quotas.set_quota(a, b1, 2)
    assert refused.value.status == 404


def test_the_api_lists_and_sets_quotas_inside_the_account_only(app, ctx):
    from appliance.web.services.licence import assign_program

    a, a1, b1 = ctx.tenants["A"], ctx.tenants["A1"], ctx.tenants["B1"]
    contract_for(a, 12)
    assign_program(a, "api")
    client = app.test_client()
    url = f"/api/v1/tenants/{a.id}/seat-quotas"
    answer = client.post(url, json={"tenant_id": a1.id, "seats": 4}, headers=ctx.headers("A", "admin"))
    assert answer.status_code == 200, answer.get_json()
    listed = client.get(url, headers=ctx.headers("A", "admin")).get_json()
    assert listed["contract_seats"] == 12 and listed["used"] == 9
    assert {q["tenant_id"]: q["quota"] for q in listed["quotas"]} == {a1.id: 4, ctx.tenants["A2"].id: None}

    assert client.post(url, json={"tenant_id": b1.id, "seats": 1},
                       headers=ctx.headers("A", "admin")).status_code == 404  # B's sub-account
    assert client.get(url, headers=ctx.headers("B", "admin")).status_code in (403, 404)
    assert client.get(url, headers=ctx.headers("A", "supervisor")).status_code == 403
    too_many = client.post(url, json={"tenant_id": a1.id, "seats": 13}, headers=ctx.headers("A", "admin"))
    assert too_many.status_code == 409 and "at most 12" in too_many.get_json()["message"]


@pytest.fixture
def world(app):
    """The ctx world, built in an app context that ends: pages need each request's own."""
    from appliance.web.business import catalogue
    from tests.helpers import build_world

    with app.app_context():
        world = build_world()
        catalogue.publish("webchat", START, monthly_fee_minor=2000)
        contract_for(world.tenants["A"], 12)
    return world


def test_the_account_admin_sets_a_quota_on_the_billing_page(app, world):
    ctx = world
    a, a1 = ctx.tenants["A"], ctx.tenants["A1"]
    client = app.test_client()
    assert login(client, ctx.email("A", "admin"), PASSWORD).status_code == 302
    page = client.get(f"/t/{a.id}/billing").get_data(as_text=True)
    assert "9 of 12 contracted seats in use" in page and 'id="seat-quotas"' in page
    token = csrf_token(client, f"/t/{a.id}/billing")
    saved = client.post(f"/t/{a.id}/billing/quotas", data={"csrf_token": token, "sub_id": a1.id, "seats": "5"},
                        follow_redirects=True)
    assert "Seat quota of Tenant A1 saved." in saved.get_data(as_text=True)
    with app.app_context():
        assert quotas.quota_of(a1) == 5
    other = client.post(f"/t/{a.id}/billing/quotas", data={"csrf_token": token, "sub_id": ctx.tenants["B1"].id,
                                                           "seats": "1"})
    assert other.status_code == 404
