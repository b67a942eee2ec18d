"""The server-rendered operator UI and the public endpoints, through the Flask test client.

Tree from conftest: P > A > (A1, A2); P > B > B1, a user of each role per tenant
(``<role>@<key>.test``), one conversation, channel, contact, article... per tenant.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from urllib.parse import urlparse

import pytest

from appliance.web.models.base import utcnow
from appliance.web.models.contact_center import Channel, Conversation, Message
from appliance.web.services import contacts, conversations
from tests.helpers import PASSWORD, csrf_token, login

CONV_LINK = re.compile(r'href="/t/(\d+)/conversations/(\d+)"')
OLDER_LINK = re.compile(r'<a rel="next" class="older" href="([^"]+)"')


def _as(client, world, key, role):
    response = login(client, world.email(key, role))
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return world.tenants[key]


def _csrf(client, tenant):
    return csrf_token(client, f"/t/{tenant.id}/inbox")


def _text(response) -> str:
    return response.get_data(as_text=True)


def _conv_ids(response) -> list[int]:
    return [int(conv_id) for _, conv_id in CONV_LINK.findall(_text(response))]


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


# --- login ------------------------------------------------------------------------------

def test_login_ok_wrong_password_and_throttle(client, world):
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in _text(page)

    ok = login(client, world.email("A", "agent"))
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    landing = client.get("/", follow_redirects=True)
    assert landing.status_code == 200
    assert urlparse(landing.request.url).path == f"/t/{world.tenants['A'].id}/inbox"
    client.post("/logout", data={"csrf_token": _csrf(client, world.tenants["A"])})

    email = world.email("B", "agent")
    wrong = login(client, email, "not-the-password")
    assert wrong.status_code == 401
    assert "Wrong e-mail or password" in _text(wrong)
    for _ in range(4):  # five failures in the window in all
        assert login(client, email, "not-the-password").status_code == 401
    locked = login(client, email, PASSWORD)  # even the right password waits now
    assert locked.status_code == 429
    assert "Too many failed logins" in _text(locked)
    # Another account is not affected by B's lockout.
    assert login(client, world.email("B", "admin")).status_code == 302


def test_login_keeps_next_but_refuses_foreign_redirects(client, world):
    token = csrf_token(client)
    response = client.post("/login", data={"email": world.email("A", "agent"), "password": PASSWORD,
                                           "csrf_token": token, "next": "//evil.example/x"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get(f"/t/{world.tenants['A'].id}/kb").status_code == 200
    # Not logged in: a tenant page sends to login with next.
    anonymous = client.application.test_client()
    response = anonymous.get(f"/t/{world.tenants['A'].id}/inbox")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]


def test_form_post_without_csrf_token_is_400(client, world):
    tenant = _as(client, world, "A", "agent")
    conv = world.objects["A"]["conversation"]
    url = f"/t/{tenant.id}/conversations/{conv.id}/reply"
    refused = client.post(url, data={"body": "sneaky", "kind": "out"})
    assert refused.status_code == 400
    assert Message.select().where(Message.conversation == conv.id).count() == 1
    assert client.post("/logout").status_code == 400
    accepted = client.post(url, data={"body": "proper", "kind": "out", "csrf_token": _csrf(client, tenant)})
    assert accepted.status_code == 302


# --- inbox ------------------------------------------------------------------------------

def _make_conversations(world, key, count):
    """``count`` conversations with distinct, older-to-newer last_message_at."""
    tenant = world.tenants[key]
    channel = world.objects[key]["channel"]
    made = []
    base = utcnow() - dt.timedelta(hours=1)
    for i in range(count):
        contact = contacts.create_contact(tenant, name=f"Bulk {i}", email=f"bulk{i}@{key.lower()}.example")
        conv = conversations.start_conversation(channel, tenant, contact, f"bulk message {i}")
        # Two conversations per timestamp: the cursor must break ties by id.
        Conversation.update(last_message_at=base + dt.timedelta(seconds=i // 2)).where(
            Conversation.id == conv.id).execute()
        made.append(conv.id)
    return made


def test_inbox_pagination_has_no_overlap_or_gap(client, world):
    made = _make_conversations(world, "A", 30)
    tenant = _as(client, world, "A", "agent")
    first = client.get(f"/t/{tenant.id}/inbox?status=all")
    assert first.status_code == 200
    page1 = _conv_ids(first)
    assert len(page1) == conversations.PAGE_SIZE
    older = OLDER_LINK.search(_text(first))
    assert older, "a full page offers an Older link"
    second = client.get(_unescape(older.group(1)))
    page2 = _conv_ids(second)
    assert page2 and not set(page1) & set(page2)
    everything = set(made) | {world.objects["A"]["conversation"].id}
    assert set(page1) | set(page2) == everything
    assert OLDER_LINK.search(_text(second)) is None
    # Newest first, across the page boundary.
    ordered = [Conversation.get_by_id(i) for i in page1 + page2]
    keys = [(c.last_message_at, c.id) for c in ordered]
    assert keys == sorted(keys, reverse=True)
    assert client.get(f"/t/{tenant.id}/inbox?cursor=garbage").status_code == 200  # flashed, not a 500


def test_inbox_filters(client, world):
    made = _make_conversations(world, "A", 6)
    me = world.users[("A", "agent")]
    conversations.set_status(Conversation.get_by_id(made[0]), "pending")
    conversations.set_status(Conversation.get_by_id(made[1]), "resolved")
    Conversation.update(assignee=None).where(Conversation.tenant == world.tenants["A"].id).execute()
    Conversation.update(assignee=me.id).where(Conversation.id.in_(made[2:4])).execute()
    other_channel = Channel.create(tenant=world.tenants["A"], kind="webhook", name="other")
    Conversation.update(channel=other_channel.id).where(Conversation.id == made[5]).execute()
    tenant = _as(client, world, "A", "agent")
    url = f"/t/{tenant.id}/inbox"

    assert _conv_ids(client.get(url + "?status=pending")) == [made[0]]
    assert _conv_ids(client.get(url + "?status=resolved")) == [made[1]]
    open_ids = set(_conv_ids(client.get(url)))  # open is the default tab
    assert made[0] not in open_ids and made[1] not in open_ids and made[2] in open_ids
    page = _text(client.get(url))
    assert re.search(r"Pending <span class=\"count\">1</span>", page)
    assert set(_conv_ids(client.get(url + "?status=all&assignee=me"))) == {made[2], made[3]}
    unassigned = set(_conv_ids(client.get(url + "?status=all&assignee=unassigned")))
    assert {made[4], made[5]} <= unassigned and made[2] not in unassigned
    assert _conv_ids(client.get(url + f"?status=all&channel={other_channel.id}")) == [made[5]]
    # Sub-accounts only with the checkbox; their rows link to the sub-account's URL.
    a1_conv = world.objects["A1"]["conversation"]
    assert a1_conv.id not in _conv_ids(client.get(url + "?status=all"))
    with_sub = client.get(url + "?status=all&sub=1")
    assert (str(world.tenants["A1"].id), str(a1_conv.id)) in CONV_LINK.findall(_text(with_sub))
    assert "Include sub-accounts" in _text(with_sub)


def test_inbox_queries_do_not_grow_with_the_page(client, world):
    """No N+1: a page of 25 rows costs as many queries as a page of 1."""
    tenant = _as(client, world, "A", "agent")
    url = f"/t/{tenant.id}/inbox?status=all"
    client.get(url)  # warm up caches (templates, principal)

    def count_selects():
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger = logging.getLogger("peewee")
        old_level = logger.level
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            assert client.get(url).status_code == 200
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        return sum(1 for r in records if "SELECT" in str(r.msg) or "SELECT" in str(r.args))

    small = count_selects()
    _make_conversations(world, "A", 30)
    large = count_selects()
    assert large == small, (small, large)


# --- conversation -----------------------------------------------------------------------

def test_reply_and_internal_note_appear_in_order(client, world):
    tenant = _as(client, world, "A", "agent")
    conv = world.objects["A"]["conversation"]
    base = f"/t/{tenant.id}/conversations/{conv.id}"
    token = _csrf(client, tenant)
    for body, kind in (("We are on it", "out"), ("VIP customer", "note")):
        assert client.post(base + "/reply", data={"body": body, "kind": kind, "csrf_token": token}).status_code == 302
    page = _text(client.get(base))
    first, reply, note = page.index("hello from A"), page.index("We are on it"), page.index("VIP customer")
    assert first < reply < note  # oldest first
    assert re.search(r'class="msg msg-note"[^>]*>.*?VIP customer', page, re.S)
    assert re.search(r'class="msg msg-out"[^>]*>.*?We are on it', page, re.S)
    assert Conversation.get_by_id(conv.id).message_count == 3
    # The canned answer of the tenant is offered in the reply box.
    assert 'data-fill="reply-body"' in page and "Hi there" in page
    empty = client.post(base + "/reply", data={"body": "  ", "kind": "out", "csrf_token": token})
    assert empty.status_code == 422 and "non-empty body" in _text(empty)


def test_long_threads_page_back_without_gaps(client, world, monkeypatch):
    from appliance.web.views import inbox as inbox_views

    monkeypatch.setattr(inbox_views, "MESSAGES_SHOWN", 3)
    conv = world.objects["A"]["conversation"]
    for i in range(6):
        conversations.add_message(conv, "in", f"line {i}")
    tenant = _as(client, world, "A", "agent")
    bodies = re.compile(r'<div class="body">([^<]*)</div>')
    latest = client.get(f"/t/{tenant.id}/conversations/{conv.id}")
    assert bodies.findall(_text(latest)) == ["line 3", "line 4", "line 5"]
    earlier = re.search(r'href="([^"]+before=\d+)"', _text(latest)).group(1)
    older = client.get(_unescape(earlier))
    assert bodies.findall(_text(older)) == ["line 0", "line 1", "line 2"]
    oldest = client.get(_unescape(re.search(r'href="([^"]+before=\d+)"', _text(older)).group(1)))
    assert bodies.findall(_text(oldest)) == ["hello from A"]
    assert "before=" not in _text(oldest)


def test_status_change(client, world):
    tenant = _as(client, world, "A", "agent")
    conv = world.objects["A"]["conversation"]
    url = f"/t/{tenant.id}/conversations/{conv.id}/status"
    token = _csrf(client, tenant)
    assert client.post(url, data={"status": "pending", "csrf_token": token}).status_code == 302
    assert Conversation.get_by_id(conv.id).status == "pending"
    bad = client.post(url, data={"status": "deleted", "csrf_token": token})
    assert bad.status_code == 422 and "status must be one of" in _text(bad)
    assert Conversation.get_by_id(conv.id).status == "pending"


def test_assignment_rules(client, world):
    conv = world.objects["A"]["conversation"]
    agent, supervisor = world.users[("A", "agent")], world.users[("A", "supervisor")]
    tenant = _as(client, world, "A", "agent")
    url = f"/t/{tenant.id}/conversations/{conv.id}/assign"
    token = _csrf(client, tenant)
    assert client.post(url, data={"assignee": str(supervisor.id), "csrf_token": token}).status_code == 403
    assert client.post(url, data={"assignee": "me", "csrf_token": token}).status_code == 302
    assert Conversation.get_by_id(conv.id).assignee_id == agent.id
    # Agents give back their own conversations but cannot take one from a colleague.
    assert client.post(url, data={"assignee": "none", "csrf_token": token}).status_code == 302
    assert Conversation.get_by_id(conv.id).assignee_id is None
    Conversation.update(assignee=supervisor.id).where(Conversation.id == conv.id).execute()
    assert client.post(url, data={"assignee": "none", "csrf_token": token}).status_code == 403
    assert client.post(url, data={"assignee": "nobody", "csrf_token": token}).status_code == 400

    client.post("/logout", data={"csrf_token": token})
    _as(client, world, "A", "supervisor")
    token = _csrf(client, tenant)
    page = _text(client.get(f"/t/{tenant.id}/conversations/{conv.id}"))
    assert f'<option value="{agent.id}"' in page  # supervisors get the list of agents
    assert client.post(url, data={"assignee": str(agent.id), "csrf_token": token}).status_code == 302
    assert Conversation.get_by_id(conv.id).assignee_id == agent.id
    outsider = world.users[("B", "agent")]
    refused = client.post(url, data={"assignee": str(outsider.id), "csrf_token": token})
    assert refused.status_code == 422 and "cannot take conversations" in _text(refused)
    assert Conversation.get_by_id(conv.id).assignee_id == agent.id


def test_objects_must_belong_to_the_tenant_in_the_url(client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    conv_a1 = world.objects["A1"]["conversation"]
    _as(client, world, "A", "admin")
    assert client.get(f"/t/{a1.id}/conversations/{conv_a1.id}").status_code == 200  # rights flow up
    assert client.get(f"/t/{a.id}/conversations/{conv_a1.id}").status_code == 404  # wrong tenant in URL
    contact_a1 = world.objects["A1"]["contact"]
    assert client.get(f"/t/{a.id}/contacts/{contact_a1.id}").status_code == 404
    member_a1 = world.objects["A1"]["member"]
    token = _csrf(client, a)
    assert client.post(f"/t/{a.id}/admin/users/{member_a1.id}/remove", data={"csrf_token": token}).status_code == 404
    client.post("/logout", data={"csrf_token": token})
    _as(client, world, "A2", "admin")  # a sibling sees nothing of A1
    assert client.get(f"/t/{a1.id}/conversations/{conv_a1.id}").status_code == 404
    assert client.get(f"/t/{a1.id}/inbox").status_code == 404


# --- contacts and knowledge base ---------------------------------------------------------

def test_contact_search_and_edit(client, world):
    tenant = _as(client, world, "A", "agent")
    contact = world.objects["A"]["contact"]
    found = _text(client.get(f"/t/{tenant.id}/contacts?q=C@A.EXAMPLE"))
    assert f"/contacts/{contact.id}" in found
    assert f"/contacts/{contact.id}" not in _text(client.get(f"/t/{tenant.id}/contacts?q=c@a.exampl"))
    assert f"/contacts/{contact.id}" in _text(client.get(f"/t/{tenant.id}/contacts?q=%2B49 30 1234567"))
    url = f"/t/{tenant.id}/contacts/{contact.id}"
    token = _csrf(client, tenant)
    saved = client.post(url, data={"name": "Renamed", "email": "new@a.example", "phone": "", "notes": "likes tea",
                                   "csrf_token": token})
    assert saved.status_code == 302
    page = _text(client.get(url))
    assert "Renamed" in page and "likes tea" in page
    assert f"/conversations/{world.objects['A']['conversation'].id}" in page
    bad = client.post(url, data={"name": "X", "email": "not-an-address", "csrf_token": token})
    assert bad.status_code == 422 and "valid e-mail" in _text(bad)


def test_knowledge_base_sharing_and_editing(client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    shared, private = world.objects["A"]["shared_article"], world.objects["A"]["article"]
    _as(client, world, "A1", "supervisor")
    listing = _text(client.get(f"/t/{a1.id}/kb"))
    assert ">shared A<" in listing and "shared by Tenant A" in listing and ">private A<" not in listing
    assert client.get(f"/t/{a1.id}/kb/{shared.id}").status_code == 200
    assert client.get(f"/t/{a1.id}/kb/{private.id}").status_code == 404
    assert client.get(f"/t/{a1.id}/kb/{shared.id}/edit").status_code == 404  # read-only below the owner
    token = _csrf(client, a1)
    created = client.post(f"/t/{a1.id}/kb/new", data={"title": "Own note", "body": "text", "published": "1",
                                                      "csrf_token": token})
    assert created.status_code == 302
    edit_url = created.headers["Location"] + "/edit"
    assert client.post(edit_url, data={"title": "Own note v2", "body": "text", "published": "1",
                                       "csrf_token": token}).status_code == 302
    assert "Own note v2" in _text(client.get(f"/t/{a1.id}/kb"))
    assert client.post(edit_url, data={"title": "", "body": "x", "csrf_token": token}).status_code == 422
    client.post("/logout", data={"csrf_token": token})
    _as(client, world, "A1", "agent")
    assert client.get(f"/t/{a1.id}/kb/new").status_code == 403
    assert client.get(f"/t/{a.id}/kb").status_code == 404  # A1's agent does not reach A


def test_canned_answers(client, world):
    tenant = _as(client, world, "A", "supervisor")
    token = _csrf(client, tenant)
    created = client.post(f"/t/{tenant.id}/canned", data={"shortcut": "bye", "title": "Bye", "body": "Goodbye!",
                                                          "csrf_token": token})
    assert created.status_code == 302 and "Goodbye!" in _text(client.get(f"/t/{tenant.id}/canned"))
    dup = client.post(f"/t/{tenant.id}/canned",
                      data={"shortcut": "bye", "title": "B", "body": "b", "csrf_token": token})
    assert dup.status_code == 409
    canned = world.objects["A"]["canned"]
    client.post("/logout", data={"csrf_token": token})
    _as(client, world, "A", "agent")
    token = _csrf(client, tenant)
    assert "Goodbye!" in _text(client.get(f"/t/{tenant.id}/canned"))
    assert client.post(f"/t/{tenant.id}/canned/{canned.id}/delete", data={"csrf_token": token}).status_code == 403


# --- admin ------------------------------------------------------------------------------

ADMIN_PAGES = ("users", "subaccounts", "channels", "tokens", "branding")


@pytest.mark.parametrize("role", ["agent", "supervisor"])
def test_admin_pages_forbidden_below_admin(client, world, role):
    tenant = _as(client, world, "A", role)
    page = _text(client.get(f"/t/{tenant.id}/inbox"))
    assert "/admin/" not in page  # no admin links in the nav either
    token = _csrf(client, tenant)
    for name in ADMIN_PAGES:
        assert client.get(f"/t/{tenant.id}/admin/{name}").status_code == 403, name
    posted = client.post(f"/t/{tenant.id}/admin/users",
                         data={"email": "x@y.test", "role": "admin", "csrf_token": token})
    assert posted.status_code == 403


def test_admin_pages_work_for_admins(client, world):
    tenant = _as(client, world, "A", "admin")
    nav = _text(client.get(f"/t/{tenant.id}/inbox"))
    for name in ADMIN_PAGES:
        assert f"/t/{tenant.id}/admin/{name}" in nav
        assert client.get(f"/t/{tenant.id}/admin/{name}").status_code == 200, name
    token = _csrf(client, tenant)
    added = client.post(f"/t/{tenant.id}/admin/users", data={
        "email": "new.agent@a.test", "name": "New Agent", "password": "long-enough-pw", "role": "agent",
        "shared": "1", "csrf_token": token})
    assert added.status_code == 302
    assert "new.agent@a.test" in _text(client.get(f"/t/{tenant.id}/admin/users"))
    weak = client.post(f"/t/{tenant.id}/admin/users", data={
        "email": "weak@a.test", "name": "W", "password": "short", "role": "agent", "csrf_token": token})
    assert weak.status_code == 422
    member = world.objects["A"]["member"]
    assert client.post(f"/t/{tenant.id}/admin/users/{member.id}", data={
        "role": "supervisor", "available": "1", "csrf_token": token}).status_code == 302
    member = type(member).get_by_id(member.id)
    assert (member.role, member.shared, member.available) == ("supervisor", False, True)
    self_member = world.members[("A", "admin")]
    refused = client.post(f"/t/{tenant.id}/admin/users/{self_member.id}/remove", data={"csrf_token": token})
    assert refused.status_code == 422

    child = client.post(f"/t/{tenant.id}/admin/subaccounts", data={"name": "Country Team X", "kind": "country_team",
                                                                   "csrf_token": token})
    assert child.status_code == 302 and "Country Team X" in _text(client.get(f"/t/{tenant.id}/admin/subaccounts"))
    wrong_kind = client.post(f"/t/{tenant.id}/admin/subaccounts", data={"name": "Y", "kind": "reseller",
                                                                        "csrf_token": token})
    assert wrong_kind.status_code == 422

    made = client.post(f"/t/{tenant.id}/admin/channels", data={"name": "Mail", "kind": "email", "csrf_token": token})
    assert made.status_code == 302
    channel = Channel.get(Channel.name == "Mail", Channel.tenant == tenant.id)
    page = _text(client.get(f"/t/{tenant.id}/admin/channels"))
    # E-mail reads its mailbox: it has no signing secret to show (webhook channels show theirs once).
    assert f"/hooks/{channel.public_key}" in page and channel.secret not in page
    toggled = client.post(f"/t/{tenant.id}/admin/channels/{channel.id}", data={"shared": "1", "csrf_token": token})
    assert toggled.status_code == 302
    channel = Channel.get_by_id(channel.id)
    assert channel.shared and not channel.is_active  # an unticked box means off

    created = client.post(f"/t/{tenant.id}/admin/tokens", data={"name": "CRM", "role": "agent", "csrf_token": token})
    assert created.status_code == 201
    secret = re.search(r'id="new-token">(apl_[^<]+)<', _text(created)).group(1)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert secret not in _text(client.get(f"/t/{tenant.id}/admin/tokens"))  # shown once
    from appliance.web.models.tenancy import ApiToken

    row = ApiToken.get(ApiToken.name == "CRM")
    assert client.post(f"/t/{tenant.id}/admin/tokens/{row.id}/revoke", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f0d1d10000000049454e44ae426082"
)


def test_branding_shows_on_pages_and_widget(client, world):
    tenant = _as(client, world, "A", "admin")
    token = _csrf(client, tenant)
    saved = client.post(f"/t/{tenant.id}/admin/branding", data={
        "name": "Acme Bank", "brand_color": "#aa1122", "logo": (io.BytesIO(PNG_1PX), "logo.png"),
        "csrf_token": token}, content_type="multipart/form-data")
    assert saved.status_code == 302
    page = _text(client.get(f"/t/{tenant.id}/inbox"))
    assert "--brand: #aa1122" in page and "Acme Bank" in page and 'src="data:image/png;base64,' in page
    # A sub-account without branding of its own shows its parent's (tests/test_lifecycle.py: its own).
    sub = _text(client.get(f"/t/{world.tenants['A1'].id}/inbox"))
    assert "--brand: #aa1122" in sub and "data:image/png" in sub
    widget = _text(client.get(f"/widget/{world.objects['A']['channel'].public_key}"))
    assert "Acme Bank" in widget and "--brand: #aa1122" in widget and "data:image/png;base64," in widget

    svg = client.post(f"/t/{tenant.id}/admin/branding", data={
        "name": "Acme Bank", "brand_color": "#aa1122", "logo": (io.BytesIO(b"<svg onload=alert(1)>"), "x.svg"),
        "csrf_token": token}, content_type="multipart/form-data")
    assert svg.status_code == 415
    big = client.post(f"/t/{tenant.id}/admin/branding", data={
        "name": "Acme Bank", "brand_color": "#aa1122", "logo": (io.BytesIO(PNG_1PX + b"\0" * 150_000), "big.png"),
        "csrf_token": token}, content_type="multipart/form-data")
    assert big.status_code == 413
    colour = client.post(f"/t/{tenant.id}/admin/branding", data={
        "name": "Acme Bank", "brand_color": "red;}", "csrf_token": token}, content_type="multipart/form-data")
    assert colour.status_code == 422
    assert "--brand: #aa1122" in _text(client.get(f"/t/{tenant.id}/inbox"))  # unchanged by the refusals


def test_switcher_lists_reachable_tenants(client, world):
    _as(client, world, "A", "agent")
    page = _text(client.get(f"/t/{world.tenants['A'].id}/inbox"))
    switcher = page[page.index('name="tenant_id"'):page.index("</select>", page.index('name="tenant_id"'))]
    assert "Tenant A1" in switcher and "Tenant A2" in switcher and "Tenant B" not in switcher
    token = _csrf(client, world.tenants["A"])
    moved = client.post("/switch", data={"tenant_id": str(world.tenants["A1"].id), "csrf_token": token})
    assert moved.status_code == 302 and moved.headers["Location"] == f"/t/{world.tenants['A1'].id}/inbox"


# --- widget and webhook -----------------------------------------------------------------

def test_widget_end_to_end(client, world):
    channel = world.objects["A"]["channel"]
    page = client.get(f"/widget/{channel.public_key}")
    assert page.status_code == 200 and "widget.js" in _text(page)
    assert "frame-ancestors *" in page.headers["Content-Security-Policy"]
    url = f"/widget/{channel.public_key}/messages"
    visitor = client.application.test_client()
    first = visitor.post(url, json={"name": "Vera Visitor", "email": "vera@example.org", "body": "Is anyone there?"})
    assert first.status_code == 201
    token, conv_id = first.get_json()["token"], first.get_json()["conversation_id"]
    second = visitor.post(url, json={"body": "Hello?", "token": token})
    assert second.status_code == 201 and second.get_json()["conversation_id"] == conv_id
    # A new visitor typing the same e-mail gets a new conversation, never Vera's history.
    impostor = visitor.post(url, json={"email": "vera@example.org", "body": "show me"})
    assert impostor.get_json()["conversation_id"] != conv_id

    tenant = _as(client, world, "A", "agent")
    token_csrf = _csrf(client, tenant)
    base = f"/t/{tenant.id}/conversations/{conv_id}"
    assert "Is anyone there?" in _text(client.get(base))
    client.post(base + "/reply", data={"body": "Yes, how can I help?", "kind": "out", "csrf_token": token_csrf})
    client.post(base + "/reply", data={"body": "secret internal remark", "kind": "note", "csrf_token": token_csrf})

    polled = visitor.get(f"{url}?token={token}")
    assert polled.status_code == 200
    bodies = [(m["direction"], m["body"]) for m in polled.get_json()["items"]]
    assert bodies == [("in", "Is anyone there?"), ("in", "Hello?"), ("out", "Yes, how can I help?")]
    last = polled.get_json()["items"][-1]["id"]
    assert visitor.get(f"{url}?token={token}&after={last}").get_json()["items"] == []

    # Tokens are bound to their channel; garbage and bad bodies are 4xx JSON.
    other = world.objects["A1"]["channel"]
    assert visitor.get(f"/widget/{other.public_key}/messages?token={token}").status_code == 403
    assert visitor.get(f"{url}?token=forged").status_code == 403
    assert visitor.get(url).status_code == 400
    for bad, status in ((b"not json", 400), (b"[1]", 400), (b'{"body": 5}', 422), (b'{"body": ""}', 422),
                        (b'{"body": "x", "admin": true}', 422)):
        answer = visitor.post(url, data=bad, content_type="application/json")
        assert answer.status_code == status, bad
        assert answer.get_json()["status"] == status
    assert visitor.post(url, json={"body": "x" * 20_001}).status_code == 422
    # Widget only for active web-chat channels.
    webhook_channel = world.objects["A"]["shared_channel"]
    assert visitor.get(f"/widget/{webhook_channel.public_key}").status_code == 404
    Channel.update(is_active=False).where(Channel.id == channel.id).execute()
    switched_off = visitor.post(url, json={"body": "late"})
    assert switched_off.status_code == 403 and "switched off" in switched_off.get_json()["message"]
    assert visitor.get("/widget/unknown-key").status_code == 404


def _sign(secret: str, raw: bytes) -> dict:
    from appliance.web.channels.webhook import signed_headers

    return signed_headers(secret, raw)


def test_webhook_signatures(client, world):
    channel = world.objects["B"]["shared_channel"]  # kind webhook
    url = f"/hooks/{channel.public_key}"
    raw = json.dumps({"name": "Max", "phone": "+49 170 5550000", "body": "via messenger"}).encode()
    headers = {"Content-Type": "application/json"}
    assert client.post(url, data=raw, headers=headers).status_code == 401
    wrong = client.post(url, data=raw, headers=headers | _sign("not-the-secret", raw))
    assert wrong.status_code == 401 and wrong.get_json()["status"] == 401
    tampered = raw.replace(b"Max", b"Eve")
    signed_other = headers | _sign(channel.secret, raw)
    assert client.post(url, data=tampered, headers=signed_other).status_code == 401

    good = client.post(url, data=raw, headers=headers | _sign(channel.secret, raw))
    assert good.status_code == 202
    conv = Conversation.get_by_id(good.get_json()["conversation_id"])
    assert conv.tenant_id == world.tenants["B"].id and conv.channel_id == channel.id
    assert [m.body for m in conv.messages] == ["via messenger"]
    second = json.dumps({"phone": "+49 170 5550000", "body": "again"}).encode()
    again = client.post(url, data=second, headers=headers | _sign(channel.secret, second))
    assert again.get_json()["conversation_id"] == conv.id  # the same contact continues

    for bad, status in ((b"{not json", 400), (b'{"body": "x", "extra": 1}', 422), (b'{"name": "x"}', 422)):
        answer = client.post(url, data=bad, headers=headers | _sign(channel.secret, bad))
        assert answer.status_code == status, bad
    webchat = world.objects["B"]["channel"]
    assert client.post(f"/hooks/{webchat.public_key}", data=raw,
                       headers=headers | _sign(webchat.secret, raw)).status_code == 404


# --- health and metrics -----------------------------------------------------------------

def test_health_ok(client):
    answer = client.get("/health")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert isinstance(body["schema_version"], int) and body["schema_version"] >= 1
    assert body["version"]


def test_health_503_when_the_database_is_down(app, client, instance, request, tmp_path, world):
    """Really unreachable: SQLite's directory moved away, or PostgreSQL refusing connections."""
    operator = app.test_client()
    assert login(operator, world.email("A", "agent")).status_code == 302
    database = app.extensions["database"]
    if not database.is_closed():
        database.close()
    if request.node.callspec.params["db_url"] == "sqlite":
        moved = tmp_path / "moved-away"
        instance.home.rename(moved)
        restore = lambda: moved.rename(instance.home)  # noqa: E731
    else:
        server = request.getfixturevalue("pg_server")
        name = urlparse(instance.database_url).path.lstrip("/")
        server.psql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        # Down means the pooled connections die too, as when the server goes away.
        server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        restore = lambda: server.psql(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")  # noqa: E731
    try:
        answer = client.get("/health")
        assert answer.status_code == 503
        assert answer.get_json()["database"] == "unreachable"
        assert client.post("/hooks/whatever", data=b"{}").status_code == 503
        # A logged-in operator and an API client get a 503 that says what happened.
        page = operator.get(f"/t/{world.tenants['A'].id}/inbox")
        assert page.status_code == 503 and "database is not reachable" in page.get_data(as_text=True)
        api = client.get("/api/v1/me", headers=world.headers("A", "agent"))
        assert api.status_code == 503 and "database" in api.get_json()["message"]
    finally:
        restore()
    assert client.get("/health").status_code == 200


def test_metrics_loopback_only(client, world):
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = _text(answer)
    assert 'appliance_conversations{status="open"} 6' in text
    assert "appliance_tenants 6" in text and "appliance_users 18" in text
    assert re.search(r"^appliance_messages_total 6$", text, re.M)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


def test_metrics_token_when_configured(app, client):
    app.extensions["appliance_instance"].settings["metrics_token"] = "s3cret-metrics-token"
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer s3cret-metrics-token"}).status_code == 200
