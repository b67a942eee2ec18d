"""Adding an existing user of another tenant is an invitation that user accepts (or a
provider admin's action), and the answer never says whether the address has an account."""

from __future__ import annotations

from appliance.web.models.security import Invitation
from appliance.web.models.tenancy import Membership
from tests.helpers import csrf_token, login


def _add(client, world, tenant_key, email, actor=("A", "admin")):
    return client.post(f"/api/v1/tenants/{world.tenants[tenant_key].id}/members", headers=world.headers(*actor),
                       json={"email": email, "name": "Someone", "password": "a-long-passphrase-here",
                             "role": "admin"})


def _strip(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "email"}


def test_an_existing_user_of_another_tenant_is_only_invited(app, client, world):
    victim = world.users[("B", "admin")]
    existing = _add(client, world, "A", victim.email)
    unknown = _add(client, world, "A", "nobody.here@example.test")
    assert existing.status_code == unknown.status_code == 202
    assert _strip(existing.get_json()) == _strip(unknown.get_json())  # no name, no id, no hint
    assert "name" not in existing.get_json() and "id" not in existing.get_json()
    with app.app_context():
        assert not Membership.select().where(Membership.user == victim.id,
                                             Membership.tenant == world.tenants["A"].id).exists()
        assert Invitation.select().where(Invitation.user == victim.id, Invitation.accepted.is_null()).count() == 1


def test_the_invited_user_accepts_and_becomes_a_member(app, client, world):
    invited = world.users[("B", "agent")]
    _add(client, world, "A", invited.email)
    user_client = app.test_client()
    login(user_client, invited.email)
    page = user_client.get("/account").get_data(as_text=True)
    assert "Tenant A invites you as admin" in page
    with app.app_context():
        invitation = Invitation.get(Invitation.user == invited.id)
    token = csrf_token(user_client, "/account")
    accepted = user_client.post("/account/invitations", data={"invitation_id": invitation.id, "decision": "accept",
                                                              "csrf_token": token})
    assert accepted.status_code == 302
    with app.app_context():
        member = Membership.get(Membership.user == invited.id, Membership.tenant == world.tenants["A"].id)
        assert member.role == "admin"
    # Nobody else can answer it, and it cannot be answered twice.
    other = app.test_client()
    login(other, world.email("B", "supervisor"))
    token = csrf_token(other, "/account")
    assert other.post("/account/invitations", data={"invitation_id": invitation.id, "decision": "accept",
                                                    "csrf_token": token}).status_code == 404


def test_a_provider_admin_adds_an_existing_user_directly(app, client, world):
    existing = world.users[("B", "agent")]
    resp = _add(client, world, "A", existing.email, actor=("P", "admin"))
    assert resp.status_code == 202
    with app.app_context():
        assert Membership.select().where(Membership.user == existing.id,
                                         Membership.tenant == world.tenants["A"].id).exists()


def test_a_weak_password_is_refused_whether_or_not_the_address_exists(client, world):
    for email in (world.email("B", "admin"), "fresh.person@example.test"):
        resp = client.post(f"/api/v1/tenants/{world.tenants['A'].id}/members", headers=world.headers("A", "admin"),
                           json={"email": email, "password": "short", "role": "agent"})
        assert resp.status_code == 422


def test_the_ui_says_the_same_for_an_existing_and_a_new_address(app, world):
    import re

    app.config["WTF_CSRF_ENABLED"] = False
    admin = app.test_client()
    login(admin, world.email("A", "admin"))
    url = f"/t/{world.tenants['A'].id}/admin/users"
    flashes = []
    for email in (world.email("B1", "agent"), "brand.new@example.test"):
        resp = admin.post(url, data={"email": email, "name": "X", "password": "a-long-passphrase-here",
                                     "role": "agent"}, follow_redirects=True)
        assert resp.status_code == 200
        flashes.append(re.findall(r'class="flash flash-\w+"[^>]*>([^<]+)<', resp.get_data(as_text=True)))
    assert flashes[0] == flashes[1] and flashes[0]
