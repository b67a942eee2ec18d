"""The inbox agents work in: relative times in the installation's zone, the newest message's
preview (sealed on the conversation row), unread markers per agent, labels shared down,
search by contact, priority, snooze and its worker job, through the services, the pages
and the API, on both databases."""

from __future__ import annotations

import datetime as dt
import json
import re
from zoneinfo import ZoneInfo

import pytest

from appliance.core.calendar import relative
from appliance.web.channels.webhook import signed_headers
from appliance.web.models.contact_center import Contact, Conversation, ConversationLabel, Label
from appliance.web.services import ServiceError, contacts, conversations, labels
from tests.helpers import csrf_token, login

ROW = re.compile(r'<tr class="ibx-row( ibx-unread)?" data-row>\s*<td>.*?href="/t/\d+/conversations/(\d+)"', re.S)


def _hook(client, channel, n, sender, body, **extra):
    raw = json.dumps({"id": f"d-{n}", "sender_id": sender, "name": "Customer", "body": body, **extra}).encode()
    answer = client.post(f"/hooks/{channel.public_key}", data=raw,
                         headers={"Content-Type": "application/json"} | signed_headers(channel.secret, raw))
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return answer.get_json()["conversation_id"]


def _rows(page) -> dict[int, bool]:
    """conversation id -> unread, as the inbox page shows them."""
    return {int(cid): bool(unread) for unread, cid in ROW.findall(page.get_data(as_text=True))}


def _as(client, world, key, role):
    assert login(client, world.email(key, role)).status_code == 302
    return world.tenants[key]


# --- relative times -------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("stored, shown", [
    (dt.datetime(2030, 4, 17, 9, 29, 30), "now"),
    (dt.datetime(2030, 4, 17, 9, 25), "5 min"),
    (dt.datetime(2030, 4, 17, 6, 0), "08:00"),              # today in Berlin (UTC+2 in April)
    (dt.datetime(2030, 4, 16, 12, 2), "yesterday 14:02"),
    (dt.datetime(2030, 4, 15, 21, 59), "15 Apr"),           # 23:59 local, two days ago
    (dt.datetime(2030, 4, 15, 22, 30), "yesterday 00:30"),  # a UTC day earlier, yesterday in Berlin
    (dt.datetime(2029, 12, 1, 12, 0), "1 Dec 2029"),
    (dt.datetime(2030, 4, 17, 10, 10), "in 40 min"),
    (dt.datetime(2030, 4, 18, 7, 0), "tomorrow 09:00"),
    (dt.datetime(2030, 4, 25, 7, 0), "25 Apr 09:00"),
])
def test_relative_times_in_the_installation_zone(stored, shown):
    now = dt.datetime(2030, 4, 17, 9, 30, tzinfo=dt.UTC)
    assert relative(stored, BERLIN, now) == shown


def test_inbox_shows_relative_times_in_the_timezone_setting(app, client, world, clock):
    app.extensions["appliance_instance"].settings["timezone"] = "Asia/Tokyo"  # UTC+9: 09:30 UTC is 18:30
    a = _as(client, world, "A", "agent")
    page = client.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert ">now</time>" in page
    day_before = clock.naive() - dt.timedelta(days=1)
    Conversation.update(last_message_at=day_before).execute()
    page = client.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert ">yesterday 18:30</time>" in page
    assert 'title="2030-04-16 18:30 JST"' in page


# --- preview ------------------------------------------------------------------------------

def test_preview_is_sealed_on_the_row_and_shown_truncated(app, client, world):
    channel = world.objects["A"]["shared_channel"]
    long_text = "Hello,\n\nmy   order 4711 " + "is late " * 40
    conv_id = _hook(client, channel, 1, "s1", "first message")
    assert _hook(client, channel, 2, "s1", long_text) == conv_id
    raw = Conversation.select(Conversation.preview).where(Conversation.id == conv_id).tuples().get()[0]
    assert b"order 4711" not in bytes(raw)  # ciphertext at rest
    conv = Conversation.get_by_id(conv_id)
    assert conv.preview.startswith("Hello, my order 4711 is late")
    assert len(conv.preview) == 120 and conv.preview.endswith("\u2026")
    assert conv.last_direction == "in"
    a = _as(client, world, "A", "agent")
    page = client.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert "Hello, my order 4711 is late" in page and "first message" not in page
    conversations.add_message(conv, "out", "We are on it", author=world.users[("A", "agent")].id)
    page = client.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert '<span class="muted">You: </span>We are on it' in page


def test_preview_masks_card_numbers_where_the_tenant_masks(app, client, world):
    a = world.tenants["A"]
    a.mask_card_numbers = True
    a.save()
    conv_id = _hook(client, world.objects["A"]["shared_channel"], 1, "s1", "card 4111 1111 1111 1111 please")
    _as(client, world, "A", "agent")
    page = client.get(f"/t/{a.id}/inbox").get_data(as_text=True)
    assert "4111 1111 1111 1111" not in page and "1111" in page
    items = client.application.test_client().get(
        f"/api/v1/tenants/{a.id}/inbox", headers=world.headers("A", "agent")).get_json()["items"]
    row = next(i for i in items if i["id"] == conv_id)
    assert "4111 1111 1111 1111" not in row["preview"]


# --- unread --------------------------------------------------------------------------------

def test_unread_per_agent_opening_reads_new_inbound_unreads(app, client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    conv_id = _hook(client, channel, 1, "s1", "hello")
    a = _as(client, world, "A", "agent")
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is True
    clock.advance(minutes=1)
    assert client.get(f"/t/{a.id}/conversations/{conv_id}").status_code == 200
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is False
    other = client.application.test_client()
    _as(other, world, "A", "supervisor")
    assert _rows(other.get(f"/t/{a.id}/inbox"))[conv_id] is True  # per user
    clock.advance(minutes=1)
    _hook(client, channel, 2, "s1", "are you there?")
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is True
    # An agent's own reply does not make it unread for them.
    client.get(f"/t/{a.id}/conversations/{conv_id}")
    clock.advance(minutes=1)
    conversations.add_message(Conversation.get_by_id(conv_id), "out", "yes", author=world.users[("A", "agent")].id)
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is False
    # Marked unread by hand, and through the API.
    token = csrf_token(client, f"/t/{a.id}/inbox")
    client.post(f"/t/{a.id}/conversations/{conv_id}/unread", data={"csrf_token": token})
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is True
    api = client.application.test_client()
    headers = world.headers("A", "agent")
    assert api.post(f"/api/v1/conversations/{conv_id}/read", headers=headers,
                    json={"read": True}).get_json()["unread"] is False
    assert _rows(client.get(f"/t/{a.id}/inbox"))[conv_id] is False
    assert api.post(f"/api/v1/conversations/{conv_id}/read", headers=headers,
                    json={"read": False}).get_json()["unread"] is True
    assert api.get(f"/api/v1/conversations/{conv_id}/read", headers=headers).get_json() == {
        "conversation_id": conv_id, "unread": True}


# --- labels ----------------------------------------------------------------------------------

def test_labels_are_shared_down_added_removed_and_filter_the_inbox(app, client, world):
    a, a1, b = world.tenants["A"], world.tenants["A1"], world.tenants["B"]
    vip = labels.create_label(a, name="  VIP  customer ", color="#AA3300", shared=True)
    assert (vip.name, vip.color) == ("VIP customer", "#aa3300")
    private = labels.create_label(a, name="Internal")
    assert [lb.name for lb in labels.usable_labels(a1)] == ["label A1", "shared label A1", "shared label A",
                                                            "shared label P", "VIP customer"]
    conv_a1 = world.objects["A1"]["conversation"]
    labels.add(conv_a1, vip.id)
    labels.add(conv_a1, vip.id)  # twice: still once
    assert ConversationLabel.select().where(ConversationLabel.conversation == conv_a1.id).count() == 1
    with pytest.raises(ServiceError):
        labels.add(conv_a1, private.id)  # not shared
    with pytest.raises(ServiceError):
        labels.add(world.objects["B"]["conversation"], vip.id)  # another account
    _as(client, world, "A1", "agent")
    rows = _rows(client.get(f"/t/{a1.id}/inbox?label={vip.id}"))
    assert list(rows) == [conv_a1.id]
    page = client.get(f"/t/{a1.id}/inbox?label={world.objects['A1']['label'].id}")
    assert _rows(page) == {}
    token = csrf_token(client, f"/t/{a1.id}/inbox")
    client.post(f"/t/{a1.id}/conversations/{conv_a1.id}/labels/{vip.id}/remove", data={"csrf_token": token})
    assert _rows(client.get(f"/t/{a1.id}/inbox?label={vip.id}")) == {}
    form = client.post(f"/t/{a1.id}/conversations/{conv_a1.id}/labels", data={"csrf_token": token,
                                                                              "label_id": str(vip.id)})
    assert form.status_code == 302
    assert list(_rows(client.get(f"/t/{a1.id}/inbox?label={vip.id}"))) == [conv_a1.id]
    # The sub-account reads the shared label but cannot change it; B does not see it at all.
    assert labels.usable_label(b, vip.id) is None
    labels.delete_label(vip)
    assert not ConversationLabel.select().where(ConversationLabel.label == vip.id).exists()


def test_label_names_are_unique_per_tenant(app, world):
    a = world.tenants["A"]
    labels.create_label(a, name="Billing")
    with pytest.raises(ServiceError) as refused:
        labels.create_label(a, name="Billing")
    assert refused.value.status == 409
    labels.create_label(world.tenants["A1"], name="Billing")  # another tenant may
    with pytest.raises(ServiceError):
        labels.create_label(a, name="x", color="red")


def test_labels_api_crud_and_conversation_labels(app, client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    sup, agent = world.headers("A", "supervisor"), world.headers("A1", "agent")
    made = client.post(f"/api/v1/tenants/{a.id}/labels", headers=sup,
                       json={"name": "Escalated", "color": "#ff0000", "shared": True})
    assert made.status_code == 201, made.get_json()
    label = made.get_json()
    assert client.post(f"/api/v1/tenants/{a.id}/labels", headers=world.headers("A", "agent"),
                       json={"name": "x"}).status_code == 403
    assert client.get(f"/api/v1/labels/{label['id']}", headers=agent).status_code == 200  # shared: readable below
    assert client.patch(f"/api/v1/labels/{label['id']}", headers=world.headers("A1", "admin"),
                        json={"name": "y"}).status_code == 404  # but not changed there
    names = [i["name"] for i in client.get(f"/api/v1/tenants/{a1.id}/labels", headers=agent).get_json()["items"]]
    assert "Escalated" in names
    conv = world.objects["A1"]["conversation"]
    on = client.post(f"/api/v1/conversations/{conv.id}/labels", headers=agent, json={"label_id": label["id"]})
    assert on.status_code == 200 and [lb["name"] for lb in on.get_json()["labels"]] == ["Escalated"]
    assert client.post(f"/api/v1/conversations/{conv.id}/labels", headers=agent,
                       json={"label_id": world.objects["B"]["shared_label"].id}).status_code == 422
    inbox = client.get(f"/api/v1/tenants/{a1.id}/inbox?label_id={label['id']}", headers=agent).get_json()
    assert [i["id"] for i in inbox["items"]] == [conv.id]
    assert inbox["items"][0]["labels"][0]["name"] == "Escalated"
    assert client.get(f"/api/v1/tenants/{a1.id}/inbox?label_id={world.objects['B']['label'].id}",
                      headers=agent).status_code == 422
    renamed = client.patch(f"/api/v1/labels/{label['id']}", headers=sup, json={"name": "Escalation"})
    assert renamed.get_json()["name"] == "Escalation"
    off = client.delete(f"/api/v1/conversations/{conv.id}/labels?label_id={label['id']}", headers=agent)
    assert off.get_json()["labels"] == []
    assert client.delete(f"/api/v1/labels/{label['id']}", headers=sup).get_json() == {"deleted": label["id"]}
    assert not Label.select().where(Label.id == label["id"]).exists()


# --- search ----------------------------------------------------------------------------------

def test_search_by_email_phone_and_whole_name(app, client, world):
    a = world.tenants["A"]
    conv = world.objects["A"]["conversation"]  # Contact A, c@a.example, +49 30 1234567
    other = contacts.create_contact(a, name="Ana  María López", email="ana@example.org", phone="+44 20 7946 0958")
    other_conv = conversations.start_conversation(world.objects["A"]["channel"], a, other, "hola")
    assert contacts.search([a], "C@A.example") == [conv.contact_id]
    assert contacts.search([a], "0049 30 1234567") == [conv.contact_id]
    assert contacts.search([a], "ana maría  lópez") == [other.id]
    assert contacts.search([a], "López") == []  # a part of a name: the documented limitation
    assert contacts.search([world.tenants["B"]], "c@a.example") == []
    _as(client, world, "A", "agent")
    assert list(_rows(client.get(f"/t/{a.id}/inbox?q=ana+mar%C3%ADa+l%C3%B3pez"))) == [other_conv.id]
    assert list(_rows(client.get(f"/t/{a.id}/inbox?q=%2B49301234567"))) == [conv.id]
    assert _rows(client.get(f"/t/{a.id}/inbox?q=nobody%40example.org")) == {}
    # Over sub-accounts: each tenant's own index key.
    found = _rows(client.get(f"/t/{a.id}/inbox?q=c%40a1.example&sub=1"))
    assert list(found) == [world.objects["A1"]["conversation"].id]
    api = client.get(f"/api/v1/tenants/{a.id}/inbox?q=ana%40example.org", headers=world.headers("A", "agent"))
    assert [i["id"] for i in api.get_json()["items"]] == [other_conv.id]


def test_names_stored_before_the_index_are_filled_in_by_the_worker(app, world):
    a = world.tenants["A"]
    contact = world.objects["A"]["contact"]
    Contact.update(name_bidx=None).execute()
    assert contacts.search([a], "contact a") == []
    done = contacts.fill_name_index()
    assert done == Contact.select().count()
    assert contacts.fill_name_index() == 0  # once
    assert contacts.search([a], "CONTACT A") == [contact.id]


# --- priority and snooze -----------------------------------------------------------------------

def test_priority_is_shown_set_and_sorts_with_a_keyset_cursor(app, client, world, clock):
    a = world.tenants["A"]
    channel = world.objects["A"]["channel"]
    made = []
    for n, level in enumerate(["low", "urgent", "normal", "high", "urgent"]):
        clock.advance(minutes=1)
        c = contacts.create_contact(a, name=f"P{n}")
        conv = conversations.start_conversation(channel, a, c, f"m{n}")
        conversations.set_priority(conv, level)
        made.append(conv.id)
    first, cursor = conversations.inbox(a, status="open", sort="priority", limit=2)
    second, cursor2 = conversations.inbox(a, status="open", sort="priority", limit=2, cursor=cursor)
    third, _ = conversations.inbox(a, status="open", sort="priority", limit=10, cursor=cursor2)
    order = [r.id for r in first + second + third]
    assert order[:4] == [made[4], made[1], made[3], made[2]]
    assert set(order) == set(made) | {world.objects["A"]["conversation"].id}
    assert order[-1] == made[0]  # low last
    with pytest.raises(ServiceError):
        conversations.set_priority(Conversation.get_by_id(made[0]), "blocker")
    _as(client, world, "A", "agent")
    page = client.get(f"/t/{a.id}/inbox?sort=priority&priority=urgent")
    assert list(_rows(page)) == [made[4], made[1]]
    token = csrf_token(client, f"/t/{a.id}/inbox")
    client.post(f"/t/{a.id}/conversations/{made[0]}/priority", data={"csrf_token": token, "priority": "high"})
    assert Conversation.get_by_id(made[0]).priority == 2
    api = client.put(f"/api/v1/conversations/{made[0]}/priority", headers=world.headers("A", "agent"),
                     json={"priority": "urgent"})
    assert api.get_json()["priority"] == "urgent"


def test_snooze_reopens_once_when_due_or_when_the_contact_writes(app, client, world, clock):
    channel = world.objects["A"]["shared_channel"]
    first = _hook(client, channel, 1, "s1", "hello")
    second = _hook(client, channel, 2, "s2", "hi")
    until = clock.naive() + dt.timedelta(hours=2)
    conversations.snooze(Conversation.get_by_id(first), until)
    conversations.snooze(Conversation.get_by_id(second), until)
    assert Conversation.get_by_id(first).status == "pending"
    with pytest.raises(ServiceError):
        conversations.snooze(Conversation.get_by_id(first), clock.naive() - dt.timedelta(minutes=1))
    # The contact writes: the snooze ends at once (in the same UPDATE as the message).
    _hook(client, channel, 3, "s2", "still waiting")
    woken = Conversation.get_by_id(second)
    assert (woken.status, woken.snoozed_until) == ("open", None)
    assert conversations.wake_snoozed() == []  # not due yet
    clock.advance(hours=2)
    assert conversations.wake_snoozed() == [first]
    assert conversations.wake_snoozed() == []  # once
    assert (Conversation.get_by_id(first).status, Conversation.get_by_id(first).snoozed_until) == ("open", None)


def test_snooze_through_the_page_and_the_api_in_local_time(app, client, world, clock):
    app.extensions["appliance_instance"].settings["timezone"] = "Europe/Berlin"
    a = _as(client, world, "A", "agent")
    conv = world.objects["A"]["conversation"]
    page = client.get(f"/t/{a.id}/conversations/{conv.id}").get_data(as_text=True)
    assert 'value="2030-04-18T09:00">Tomorrow 09:00' in page
    token = csrf_token(client, f"/t/{a.id}/inbox")
    answer = client.post(f"/t/{a.id}/conversations/{conv.id}/snooze",
                         data={"csrf_token": token, "until": "2030-04-18T09:00"})
    assert answer.status_code == 302
    assert Conversation.get_by_id(conv.id).snoozed_until == dt.datetime(2030, 4, 18, 7, 0)  # 09:00 CEST
    assert "snoozed until tomorrow 09:00" in client.get(f"/t/{a.id}/inbox?status=pending").get_data(as_text=True)
    refused = client.post(f"/t/{a.id}/conversations/{conv.id}/snooze", data={"csrf_token": token, "until": "soon"})
    assert refused.status_code == 422
    api = client.post(f"/api/v1/conversations/{conv.id}/snooze", headers=world.headers("A", "agent"),
                      json={"until": "2030-04-17T12:00:00Z"})
    assert api.status_code == 200 and api.get_json()["snoozed_until"] == "2030-04-17T12:00:00Z"
    for bad in ("yesterday", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00", "2030-04-17T09:00:00Z"):
        assert client.post(f"/api/v1/conversations/{conv.id}/snooze", headers=world.headers("A", "agent"),
                           json={"until": bad}).status_code == 422, bad
    # Setting a status by hand ends the snooze.
    conversations.set_status(Conversation.get_by_id(conv.id), "open")
    assert Conversation.get_by_id(conv.id).snoozed_until is None


def test_snooze_job_is_one_of_the_worker_jobs(app):
    from appliance.web.jobs import all_jobs

    names = {job.__name__ for job in all_jobs()}
    assert {"snooze_job", "name_index_job"} <= names


def test_next_conversation_and_shortcut_script(app, client, world, clock):
    a = world.tenants["A"]
    older = world.objects["A"]["conversation"]
    clock.advance(minutes=5)
    newer = conversations.start_conversation(world.objects["A"]["channel"], a,
                                             contacts.create_contact(a, name="N"), "newer")
    _as(client, world, "A", "agent")
    page = client.get(f"/t/{a.id}/conversations/{newer.id}").get_data(as_text=True)
    assert f'href="/t/{a.id}/conversations/{older.id}" rel="next" id="next-conversation"' in page
    assert 'id="resolve-form"' in page and 'aria-keyshortcuts="r"' in page
    script = client.get("/static/inbox.js")
    assert script.status_code == 200 and b"keydown" in script.data


@pytest.mark.parametrize("cap", [0, 1000])
def test_label_filter_finds_the_same_rows_however_many_carry_the_label(app, world, monkeypatch, cap):
    # cap 0: the label counts as "many", so the filter walks the tab and probes each row.
    monkeypatch.setattr(conversations, "LABEL_LIST_CAP", cap)
    a1 = world.tenants["A1"]
    tag = labels.create_label(a1, name="Many")
    conv = world.objects["A1"]["conversation"]
    labels.add(conv, tag.id)
    rows, _ = conversations.inbox(a1, label_id=tag.id)
    assert [r.id for r in rows] == [conv.id]
    other = labels.create_label(a1, name="Unused")
    assert conversations.inbox(a1, label_id=other.id)[0] == []
    Conversation.update(status="resolved").where(Conversation.id == conv.id).execute()
    assert conversations.inbox(a1, status="open", label_id=tag.id)[0] == []
