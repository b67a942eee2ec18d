"""The JSON API does what the UI does: tenants, members, channels, contacts,
conversations, messages, assignment, canned answers, knowledge base, tokens."""

from __future__ import annotations

import pytest

from appliance.web.models.contact_center import Channel, Conversation
from appliance.web.models.tenancy import Membership


def _ok(resp, status=200):
    assert resp.status_code == status, resp.get_data(as_text=True)
    return resp.get_json()


def test_openapi_lists_every_api_route(app, client):
    doc = _ok(client.get("/api/v1/openapi.json"))
    assert doc["openapi"].startswith("3.")
    operations = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi":
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert f"{rule.endpoint[4:]}_{method.lower()}" in operations
    body = doc["paths"]["/tenants/{tenant_id}/children"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["additionalProperties"] is False
    # The access each route declares is in the document: provider-only routes say so.
    assert doc["paths"]["/tenants/{tenant_id}/members"]["get"]["x-access"] == {"role": "supervisor", "scope": "tenant"}
    install = doc["paths"]["/licence"]["post"]
    assert install["x-access"] == {"role": "admin", "scope": "provider"} and "provider" in install["description"]


def test_spec_refuses_unknown_roles_and_scopes():
    from appliance.web.api.schema import spec

    with pytest.raises(ValueError, match="role"):
        spec("x", role="owner")
    with pytest.raises(ValueError, match="scope"):
        spec("x", scope="everyone")


def test_role_is_enforced_from_spec_with_404_before_403(client, world):
    a1 = world.tenants["A1"]
    canned = {"shortcut": "welcome", "title": "Welcome", "body": "Hello!"}
    # Too small a role in a tenant it reaches: 403, before the body is even looked at.
    refused = client.post(f"/api/v1/tenants/{a1.id}/canned-answers", headers=world.headers("A1", "agent"),
                          json={"not": "a valid body"})
    assert refused.status_code == 403 and "supervisor" in refused.get_json()["message"]
    # A tenant it cannot reach at all: 404, whatever its role.
    hidden = client.post(f"/api/v1/tenants/{world.tenants['B'].id}/canned-answers",
                         headers=world.headers("A", "admin"), json=canned)
    assert hidden.status_code == 404
    # Rights flow down: a parent's supervisor may.
    assert client.post(f"/api/v1/tenants/{a1.id}/canned-answers", headers=world.headers("A", "supervisor"),
                       json=canned).status_code == 201


def test_tenant_tree_via_api(client, world):
    a = world.tenants["A"]
    child = _ok(client.post(f"/api/v1/tenants/{a.id}/children", headers=world.headers("A", "admin"),
                            json={"name": "Country team DE", "kind": "country_team"}), 201)
    assert child["level"] == 3 and child["parent_id"] == a.id
    # No fourth level.
    resp = client.post(f"/api/v1/tenants/{child['id']}/children", headers=world.headers("A", "admin"),
                       json={"name": "Too deep", "kind": "brand"})
    assert resp.status_code == 422 and "cannot have sub-accounts" in resp.get_json()["message"]
    # Accounts under the provider take account kinds only.
    resp = client.post(f"/api/v1/tenants/{world.tenants['P'].id}/children", headers=world.headers("P", "admin"),
                       json={"name": "X", "kind": "brand"})
    assert resp.status_code == 422
    names = {t["name"] for t in _ok(client.get("/api/v1/tenants", headers=world.headers("A", "agent")))["items"]}
    assert names == {"Tenant A", "Tenant A1", "Tenant A2", "Country team DE"}


def test_members_and_roles(client, world):
    a1 = world.tenants["A1"]
    answer = _ok(client.post(f"/api/v1/tenants/{a1.id}/members", headers=world.headers("A1", "admin"),
                             json={"email": "New.Agent@Example.test", "name": "New", "password": "long-enough-pw",
                                   "role": "agent"}), 202)
    assert answer["email"] == "new.agent@example.test"
    members = _ok(client.get(f"/api/v1/tenants/{a1.id}/members", headers=world.headers("A1", "admin")))["items"]
    created = next(m for m in members if m["user"]["email"] == "new.agent@example.test")
    # Adding the same address again answers exactly as the first time: answers never confirm an address.
    dup = client.post(f"/api/v1/tenants/{a1.id}/members", headers=world.headers("A1", "admin"),
                      json={"email": "new.agent@example.test", "password": "long-enough-pw", "role": "agent"})
    assert dup.status_code == 202 and dup.get_json() == answer
    weak = client.post(f"/api/v1/tenants/{a1.id}/members", headers=world.headers("A1", "admin"),
                       json={"email": "weak@example.test", "password": "short", "role": "agent"})
    assert weak.status_code == 422 and "10 characters" in weak.get_json()["message"]
    patched = _ok(client.patch(f"/api/v1/members/{created['id']}", headers=world.headers("A", "admin"),
                               json={"role": "supervisor"}))
    assert patched["role"] == "supervisor"
    # A token cannot mint a more powerful token.
    resp = client.post(f"/api/v1/tenants/{a1.id}/tokens", headers=world.headers("A1", "admin"),
                       json={"name": "x", "role": "admin"})
    token = _ok(resp, 201)["token"]
    assert token.startswith("apl_")
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    tid = resp.get_json()["id"]
    _ok(client.delete(f"/api/v1/tokens/{tid}", headers=world.headers("A1", "admin")))
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_conversation_lifecycle_and_inbox(client, world):
    a = world.tenants["A"]
    h = world.headers("A", "agent")
    channel = world.objects["A"]["channel"]
    contact = _ok(client.post(f"/api/v1/tenants/{a.id}/contacts", headers=h,
                              json={"name": "Jane Roe", "email": "Jane@Example.COM", "phone": "0049 30 555 0100"}),
                  201)
    assert contact["email"] == "jane@example.com" and contact["phone"] == "+49305550100"
    found = _ok(client.get(f"/api/v1/tenants/{a.id}/contacts?email=JANE@example.com", headers=h))["items"]
    assert [c["id"] for c in found] == [contact["id"]]
    found = _ok(client.get(f"/api/v1/tenants/{a.id}/contacts?phone=%2B49 30 5550100", headers=h))["items"]
    assert [c["id"] for c in found] == [contact["id"]]
    ids = []
    for i in range(7):
        conv = _ok(client.post(f"/api/v1/tenants/{a.id}/conversations", headers=h,
                               json={"channel_id": channel.id, "contact_id": contact["id"], "body": f"msg {i}"}), 201)
        ids.append(conv["id"])
    # Pagination: pages do not overlap and cover everything, newest first.
    seen, cursor = [], None
    while True:
        q = f"?limit=3&cursor={cursor}" if cursor else "?limit=3"
        page = _ok(client.get(f"/api/v1/tenants/{a.id}/conversations{q}", headers=h))
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 8  # 7 new + the world's one
    assert seen[:7] == sorted(ids, reverse=True)
    conv_id = ids[0]
    msg = _ok(client.post(f"/api/v1/conversations/{conv_id}/messages", headers=h,
                          json={"body": "internal", "direction": "note"}), 201)
    assert msg["direction"] == "note"
    _ok(client.patch(f"/api/v1/conversations/{conv_id}", headers=h, json={"status": "resolved"}))
    resolved = _ok(client.get(f"/api/v1/tenants/{a.id}/conversations?status=resolved", headers=h))["items"]
    assert [c["id"] for c in resolved] == [conv_id]
    messages = _ok(client.get(f"/api/v1/conversations/{conv_id}/messages", headers=h))["items"]
    assert [m["body"] for m in messages] == ["msg 0", "internal"]


def test_assignment_rules(client, world):
    conv = world.objects["A1"]["conversation"]
    me = world.users[("A1", "agent")].id
    other = world.users[("A1", "supervisor")].id
    # An agent may take an unassigned conversation but not hand it to someone else,
    # nor take a colleague's away.
    _ok(client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "supervisor"),
                     json={"assignee_id": other}))
    assert client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "agent"),
                        json={"assignee_id": me}).status_code == 403
    assert client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "agent"),
                        json={"assignee_id": None}).status_code == 403
    _ok(client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "supervisor"),
                     json={"assignee_id": None}))
    _ok(client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "agent"),
                     json={"assignee_id": me}))
    resp = client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "agent"),
                        json={"assignee_id": other})
    assert resp.status_code == 403
    _ok(client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A1", "supervisor"),
                     json={"assignee_id": other}))
    # Someone from a sibling sub-account can never be assigned.
    stranger = world.users[("A2", "agent")].id
    resp = client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A", "admin"),
                        json={"assignee_id": stranger})
    assert resp.status_code == 422
    # A parent's agent can be assigned in a sub-account (rights flow up).
    _ok(client.patch(f"/api/v1/conversations/{conv.id}", headers=world.headers("A", "admin"),
                     json={"assignee_id": world.users[("A", "agent")].id}))


def test_round_robin_among_available_agents(app, world, clock):
    from appliance.web.services import conversations

    a2 = world.tenants["A2"]
    channel = world.objects["A2"]["channel"]
    contact = world.objects["A2"]["contact"]
    members = {m.user_id for m in Membership.select().where(Membership.tenant == a2.id)}
    # Supervisors and admins take round-robin work only when opted in: here everyone is.
    Membership.update(takes_conversations=True).where(Membership.tenant == a2.id).execute()
    picks = []
    for i in range(6):
        clock.advance(seconds=1)  # turns are told apart by when they were taken
        conv = conversations.start_conversation(channel, a2, contact, f"rr {i}")
        picks.append(conv.assignee_id)
    assert set(picks) == members  # everyone got work
    assert picks[:3] != picks[3:] or len(set(picks[:3])) == 3  # it rotates
    # An unavailable agent gets nothing more.
    Membership.update(available=False).where(Membership.tenant == a2.id,
                                             Membership.user == picks[0]).execute()
    later = {conversations.start_conversation(channel, a2, contact, "x").assignee_id for _ in range(4)}
    assert picks[0] not in later


def test_shared_agents_take_subaccount_work(app, world):
    from appliance.web.services import conversations

    a, a1 = world.tenants["A"], world.tenants["A1"]
    Membership.update(available=False).where(Membership.tenant == a1.id).execute()
    channel = world.objects["A1"]["channel"]
    contact = world.objects["A1"]["contact"]
    conv = conversations.start_conversation(channel, a1, contact, "nobody home")
    assert conv.assignee_id is None  # A's agents are not shared yet
    Membership.update(shared=True).where(Membership.tenant == a.id, Membership.role == "agent").execute()
    conv = conversations.start_conversation(channel, a1, contact, "shared agent please")
    assert conv.assignee_id == world.users[("A", "agent")].id


def test_shared_resources_flow_down_read_only(client, world):
    a1 = world.tenants["A1"]
    h = world.headers("A1", "agent")
    titles = {x["title"] for x in _ok(client.get(f"/api/v1/tenants/{a1.id}/articles", headers=h))["items"]}
    assert "shared A" in titles and "shared P" in titles and "private A" not in titles
    assert "shared B" not in titles
    shared = world.objects["A"]["shared_article"]
    _ok(client.get(f"/api/v1/articles/{shared.id}", headers=h))
    assert client.patch(f"/api/v1/articles/{shared.id}", headers=world.headers("A1", "admin"),
                        json={"title": "hijack"}).status_code == 404
    names = {c["name"] for c in _ok(client.get(f"/api/v1/tenants/{a1.id}/channels", headers=h))["items"]}
    assert {"chat A1", "shared A1", "shared A", "shared P"} <= names and "chat A" not in names
    # A shared channel of the parent can carry a sub-account's conversation.
    conv = _ok(client.post(f"/api/v1/tenants/{a1.id}/conversations", headers=h,
                           json={"channel_id": world.objects["A"]["shared_channel"].id,
                                 "contact_id": world.objects["A1"]["contact"].id, "body": "via parent"}), 201)
    assert Conversation.get_by_id(conv["id"]).channel_id == world.objects["A"]["shared_channel"].id
    # ...but not an unshared one, nor a sibling's.
    for channel in (world.objects["A"]["channel"], world.objects["A2"]["shared_channel"]):
        resp = client.post(f"/api/v1/tenants/{a1.id}/conversations", headers=h,
                           json={"channel_id": channel.id, "contact_id": world.objects["A1"]["contact"].id,
                                 "body": "no"})
        assert resp.status_code == 422


def test_channel_and_canned_and_articles(client, world):
    b = world.tenants["B"]
    h = world.headers("B", "admin")
    ch = _ok(client.post(f"/api/v1/tenants/{b.id}/channels", headers=h,
                         json={"kind": "email", "name": "Support mailbox", "shared": True}), 201)
    assert Channel.get_by_id(ch["id"]).shared
    _ok(client.patch(f"/api/v1/channels/{ch['id']}", headers=h, json={"is_active": False}))
    assert not Channel.get_by_id(ch["id"]).is_active
    canned = _ok(client.post(f"/api/v1/tenants/{b.id}/canned-answers", headers=h,
                             json={"shortcut": "bye", "title": "Bye", "body": "Goodbye!"}), 201)
    assert client.post(f"/api/v1/tenants/{b.id}/canned-answers", headers=h,
                       json={"shortcut": "bye", "title": "Bye", "body": "again"}).status_code == 409
    _ok(client.delete(f"/api/v1/canned-answers/{canned['id']}", headers=h))
    art = _ok(client.post(f"/api/v1/tenants/{b.id}/articles", headers=h,
                          json={"title": "Refunds", "body": "How to refund"}), 201)
    _ok(client.patch(f"/api/v1/articles/{art['id']}", headers=h, json={"shared": True}))
    b1_titles = {x["title"] for x in _ok(client.get(f"/api/v1/tenants/{world.tenants['B1'].id}/articles",
                                                     headers=world.headers("B1", "agent")))["items"]}
    assert "Refunds" in b1_titles
    team = _ok(client.post(f"/api/v1/tenants/{b.id}/teams", headers=h, json={"name": "Tier 2"}), 201)
    _ok(client.patch(f"/api/v1/channels/{ch['id']}", headers=h, json={"team_id": team["id"]}))
    other_team = world.objects["A"]["team"].id
    assert client.patch(f"/api/v1/channels/{ch['id']}", headers=h,
                        json={"team_id": other_team}).status_code == 422


def test_branding(client, world):
    a = world.tenants["A"]
    _ok(client.patch(f"/api/v1/tenants/{a.id}", headers=world.headers("A", "admin"),
                     json={"name": "Acme Bank", "brand_color": "#aa0000"}))
    got = _ok(client.get(f"/api/v1/tenants/{a.id}", headers=world.headers("A", "agent")))
    assert got["name"] == "Acme Bank" and got["brand_color"] == "#aa0000"
    assert client.patch(f"/api/v1/tenants/{a.id}", headers=world.headers("A", "admin"),
                        json={"brand_color": "red"}).status_code == 422
