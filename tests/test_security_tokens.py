"""API tokens act with their creator's rights at each request, never more: removing,
demoting or deactivating the creator cuts them at once; tokens expire; admins list and
revoke them; a token cannot mint a token with more rights than it has."""

from __future__ import annotations

from appliance.web.models.tenancy import ApiToken, Membership, User


def _get(client, world, key, role, path):
    return client.get(path, headers=world.headers(key, role))


def test_a_removed_creators_token_stops_at_once(app, client, world):
    a = world.tenants["A"]
    assert _get(client, world, "A", "admin", f"/api/v1/tenants/{a.id}").status_code == 200
    with app.app_context():
        Membership.delete().where(Membership.id == world.members[("A", "admin")].id).execute()
    assert _get(client, world, "A", "admin", f"/api/v1/tenants/{a.id}").status_code == 401
    # ... and it cannot mint a new admin token either.
    minted = client.post(f"/api/v1/tenants/{a.id}/tokens", headers=world.headers("A", "admin"),
                         json={"name": "backdoor", "role": "admin"})
    assert minted.status_code == 401


def test_a_demoted_creators_token_has_the_new_role_only(app, client, world):
    a = world.tenants["A"]
    members = f"/api/v1/tenants/{a.id}/tokens"
    assert _get(client, world, "A", "admin", members).status_code == 200
    with app.app_context():
        Membership.update(role="agent").where(Membership.id == world.members[("A", "admin")].id).execute()
    assert _get(client, world, "A", "admin", members).status_code == 403
    me = _get(client, world, "A", "admin", "/api/v1/me").get_json()
    assert me["token"]["role"] == "admin" and me["token"]["effective_role"] == "agent"
    minted = client.post(members, headers=world.headers("A", "admin"), json={"name": "x", "role": "supervisor"})
    assert minted.status_code == 403


def test_a_deactivated_creators_token_stops(app, client, world):
    resp = client.post(f"/api/v1/members/{world.members[('A', 'admin')].id}/deactivate",
                       headers=world.headers("P", "admin"), json={"confirm": True})
    assert resp.status_code == 200 and resp.get_json()["is_active"] is False
    assert _get(client, world, "A", "admin", "/api/v1/me").status_code == 401
    with app.app_context():
        assert not User.get_by_id(world.users[("A", "admin")].id).is_active


def test_a_token_never_mints_more_than_itself(app, client, world):
    a = world.tenants["A"]
    url = f"/api/v1/tenants/{a.id}/tokens"
    # A supervisor token of an admin creator: the token's role caps what it can mint.
    with app.app_context():
        ApiToken.update(role="supervisor").where(ApiToken.created_by == world.users[("A", "admin")].id).execute()
    assert client.post(url, headers=world.headers("A", "admin"), json={"name": "x", "role": "admin"}).status_code == 403


def test_tokens_expire_and_children_never_outlive_their_parent(app, client, world, clock):
    a = world.tenants["A"]
    url = f"/api/v1/tenants/{a.id}/tokens"
    made = client.post(url, headers=world.headers("A", "admin"), json={"name": "week", "role": "admin",
                                                                        "expires_in_days": 7})
    assert made.status_code == 201, made.get_json()
    week = made.get_json()
    assert week["expires_at"].startswith("2030-04-24")
    headers = {"Authorization": f"Bearer {week['token']}"}
    child = client.post(url, headers=headers, json={"name": "child", "role": "agent", "expires_in_days": 30})
    assert child.status_code == 201 and child.get_json()["expires_at"] == week["expires_at"]
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    clock.advance(days=7, seconds=1)
    resp = client.get("/api/v1/me", headers=headers)
    assert resp.status_code == 401 and "expired" in resp.get_json()["message"]


def test_admins_list_and_revoke_tokens(app, client, world):
    a = world.tenants["A"]
    listed = client.get(f"/api/v1/tenants/{a.id}/tokens", headers=world.headers("A", "admin")).get_json()["items"]
    agent_token = next(t for t in listed if t["role"] == "agent")
    assert agent_token["created_by"] == world.users[("A", "agent")].id and "token" not in agent_token
    revoked = client.delete(f"/api/v1/tokens/{agent_token['id']}", headers=world.headers("A", "admin"))
    assert revoked.status_code == 200 and revoked.get_json()["revoked"] is True
    assert _get(client, world, "A", "agent", "/api/v1/me").status_code == 401
