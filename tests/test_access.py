"""The tenant-tree rules at the level of principals, and users in several accounts."""

from __future__ import annotations

from appliance.web.access import Principal
from appliance.web.models.tenancy import Membership
from tests.helpers import login


def test_rights_flow_up_not_sideways(app, world):
    t = world.tenants
    p = Principal.for_user(world.users[("A", "supervisor")])
    assert p.role_in(t["A"]) == p.role_in(t["A1"]) == p.role_in(t["A2"]) == "supervisor"
    assert p.role_in(t["P"]) is None and p.role_in(t["B"]) is None and p.role_in(t["B1"]) is None
    sub = Principal.for_user(world.users[("A1", "admin")])
    assert sub.role_in(t["A1"]) == "admin"
    assert sub.role_in(t["A"]) is None and sub.role_in(t["A2"]) is None
    staff = Principal.for_user(world.users[("P", "agent")])
    assert all(staff.role_in(x) == "agent" for x in t.values())


def test_user_in_several_accounts_switches(app, client, world):
    user = world.users[("A1", "agent")]
    Membership.create(user=user, tenant=world.tenants["B"], role="admin")
    p = Principal.for_user(user)
    assert p.role_in(world.tenants["B1"]) == "admin" and p.role_in(world.tenants["A1"]) == "agent"
    assert p.role_in(world.tenants["A2"]) is None
    reach = {x.name for x in p.reachable_tenants()}
    assert reach == {"Tenant A1", "Tenant B", "Tenant B1"}
    assert login(client, user.email).status_code == 302
    for key in ("A1", "B", "B1"):
        assert client.get(f"/t/{world.tenants[key].id}/inbox").status_code == 200
    assert client.get(f"/t/{world.tenants['A2'].id}/inbox").status_code == 404
