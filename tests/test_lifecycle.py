"""Account lifecycle: a user's own name, one-time password-reset links (shown without a
relay, e-mailed through a real SMTP relay on loopback with one), users and tenants
deactivated and reactivated (data kept read-only above, channels answering why, seats
freed), branding inherited by sub-accounts. Everything audited, in the UI and the API."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Conversation
from appliance.web.models.security import PasswordReset
from appliance.web.models.tenancy import Tenant, User
from appliance.web.services import licence
from tests.helpers import PASSWORD, csrf_token, login
from tests.mail_support import SMTP_PASSWORD, SMTP_USER, SmtpSink

NEW_PASSWORD = "violet-lantern-harbour-42"
LINK = re.compile(r"(?:https?://[^/\s\"]+)?/password-reset/([A-Za-z0-9_-]{20,})")


def _actions(target: str) -> set[str]:
    return {e.action for e in AuditEvent.select().where(AuditEvent.target == target)}


def _reset_api(client, world, member_key, by):
    member = world.members[member_key]
    return client.post(f"/api/v1/members/{member.id}/password-reset", headers=world.headers(*by),
                       json={"confirm": True})


def test_users_change_their_own_name(client, world):
    user = world.users[("A", "agent")]
    login(client, user.email)
    token = csrf_token(client, "/account")
    assert client.post("/account/name", data={"name": "  ", "csrf_token": token}).status_code == 422
    assert client.post("/account/name", data={"name": "Anna Agent", "csrf_token": token}).status_code == 302
    assert User.get_by_id(user.id).name == "Anna Agent" and "Anna Agent" in client.get("/account").get_data(True)
    answer = client.patch("/api/v1/me", headers=world.headers("A", "agent"), json={"name": "Anna B. Agent"})
    assert answer.status_code == 200 and answer.json["name"] == "Anna B. Agent"
    assert "user.rename" in _actions(f"user:{user.id}")


def test_reset_link_without_relay_is_shown_once_and_works_once(app, client, world, clock):
    agent = world.users[("A1", "agent")]
    login(client, world.email("A", "admin"))
    token = csrf_token(client, f"/t/{world.tenants['A1'].id}/admin/users")
    page = client.post(f"/t/{world.tenants['A1'].id}/admin/users/{world.members[('A1', 'agent')].id}/password-reset",
                       data={"csrf_token": token})
    assert page.status_code == 201
    key = LINK.search(page.get_data(as_text=True)).group(1)
    # Stored as a hash only.
    row = PasswordReset.get(PasswordReset.user == agent.id)
    assert row.token_hash == hashlib.sha256(key.encode()).hexdigest() and key not in str(row.__data__)
    assert "user.password_reset_link" in _actions(f"user:{agent.id}")

    visitor = app.test_client()
    form = visitor.get(f"/password-reset/{key}")
    assert form.status_code == 200 and form.headers["Referrer-Policy"] == "no-referrer"
    reset_token = csrf_token(visitor, f"/password-reset/{key}")
    weak = visitor.post(f"/password-reset/{key}", data={"new": "short", "again": "short", "csrf_token": reset_token})
    assert weak.status_code == 422
    done = visitor.post(f"/password-reset/{key}", data={"new": NEW_PASSWORD, "again": NEW_PASSWORD,
                                                         "csrf_token": reset_token})
    assert done.status_code == 302
    assert login(app.test_client(), agent.email, NEW_PASSWORD).status_code == 302
    assert login(app.test_client(), agent.email, PASSWORD).status_code == 401
    assert "user.password_reset" in _actions(f"user:{agent.id}")
    again = visitor.post(f"/password-reset/{key}", data={"new": "another-long-passphrase-9",
                                                          "again": "another-long-passphrase-9",
                                                          "csrf_token": csrf_token(visitor)})
    assert again.status_code == 410 and visitor.get(f"/password-reset/{key}").status_code == 410

    # Expiry, and a newer link replacing an older one.
    first = _reset_api(client, world, ("A1", "agent"), ("A", "admin")).json
    second = _reset_api(client, world, ("A1", "agent"), ("A", "admin")).json
    assert first["delivery"] == "shown" and first["link"] != second["link"]
    first_key, second_key = LINK.search(first["link"]).group(1), LINK.search(second["link"]).group(1)
    assert visitor.get(f"/password-reset/{first_key}").status_code == 410
    assert visitor.get(f"/password-reset/{second_key}").status_code == 200
    clock.advance(hours=24, seconds=1)
    assert visitor.get(f"/password-reset/{second_key}").status_code == 410


def test_only_admins_over_every_membership_reset_or_deactivate(app, client, world):
    from appliance.web.models.tenancy import Membership

    # A provider admin who also works as an agent in A1: A1's admin must not take over that account.
    Membership.create(user=world.users[("P", "admin")], tenant=world.tenants["A1"], role="agent")
    member = Membership.get(Membership.user == world.users[("P", "admin")].id,
                            Membership.tenant == world.tenants["A1"].id)
    headers = world.headers("A1", "admin")
    assert client.post(f"/api/v1/members/{member.id}/password-reset", headers=headers,
                       json={"confirm": True}).status_code == 403
    assert client.post(f"/api/v1/members/{member.id}/deactivate", headers=headers,
                       json={"confirm": True}).status_code == 403
    assert not PasswordReset.select().where(PasswordReset.user == world.users[("P", "admin")].id).exists()
    # A sibling's admin does not even see the member.
    assert _reset_api(client, world, ("A1", "agent"), ("A2", "admin")).status_code == 404


@pytest.fixture
def relay(tmp_path):
    sink = SmtpSink(tmp_path).start()
    yield sink
    sink.stop()


def test_reset_link_is_mailed_through_the_relay(app, client, world, relay, tmp_path):
    secret = tmp_path / "relay.password"
    secret.write_text(SMTP_PASSWORD + "\n")
    os.chmod(secret, 0o600)
    settings = app.extensions["appliance_instance"].settings
    settings["notify_mail"].update(host="127.0.0.1", port=relay.port, security="starttls", username=SMTP_USER,
                                   password_file=str(secret), ca_file=str(relay.cert),
                                   **{"from": "contact-center@bank.example"})
    settings["public_url"] = "https://cc.bank.example/"
    answer = _reset_api(client, world, ("B1", "agent"), ("B", "admin"))
    assert answer.status_code == 201, answer.json
    assert answer.json["delivery"] == "email" and answer.json["link"] is None
    assert len(relay.received) == 1
    mail = relay.received[0]
    assert mail.rcpt_tos == [world.email("B1", "agent")] and mail.tls and mail.login == SMTP_USER
    text = mail.message.get_content()
    match = LINK.search(text)
    assert match and "https://cc.bank.example/password-reset/" in text
    visitor = app.test_client()
    token = csrf_token(visitor, f"/password-reset/{match.group(1)}")
    assert visitor.post(f"/password-reset/{match.group(1)}", data={"new": NEW_PASSWORD, "again": NEW_PASSWORD,
                                                                   "csrf_token": token}).status_code == 302
    assert login(app.test_client(), world.email("B1", "agent"), NEW_PASSWORD).status_code == 302

    # The relay refusing, or misconfigured: the admin gets the link to hand over instead.
    settings["notify_mail"]["password_file"] = str(tmp_path / "missing")
    broken = _reset_api(client, world, ("B1", "agent"), ("B", "admin")).json
    assert broken["delivery"] == "shown" and "notify_mail.password_file" in broken["message"]
    settings["notify_mail"]["password_file"] = str(secret)
    relay.fail_next.append(554)
    refused = _reset_api(client, world, ("B1", "agent"), ("B", "admin")).json
    assert refused["delivery"] == "shown" and LINK.search(refused["link"]) and "refused" in refused["message"]


def test_users_deactivated_and_reactivated_by_their_tenant_admin(app, client, world):
    agent = world.users[("A1", "agent")]
    member = world.members[("A1", "agent")]
    answer = client.post(f"/api/v1/members/{member.id}/deactivate", headers=world.headers("A1", "admin"),
                         json={"confirm": True})
    assert answer.status_code == 200 and answer.json["is_active"] is False
    assert login(app.test_client(), agent.email).status_code == 401
    assert client.get("/api/v1/me", headers=world.headers("A1", "agent")).status_code == 401
    # The UI shows it and offers reactivation.
    login(client, world.email("A1", "admin"))
    page = client.get(f"/t/{world.tenants['A1'].id}/admin/users").get_data(as_text=True)
    assert "deactivated" in page and f"/admin/users/{member.id}/reactivate" in page
    token = csrf_token(client, f"/t/{world.tenants['A1'].id}/admin/users")
    assert client.post(f"/t/{world.tenants['A1'].id}/admin/users/{member.id}/reactivate",
                       data={"csrf_token": token}).status_code == 302
    assert login(app.test_client(), agent.email).status_code == 302
    assert {"user.deactivate", "user.reactivate"} <= _actions(f"user:{agent.id}")


def test_deactivated_tenant_keeps_its_data_read_only_and_stops_traffic(app, client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    seats_before, tenants_before = licence.seat_count(), licence.tenant_count()
    # A tenant does not switch itself off; its parent's admins do.
    refused = client.post(f"/api/v1/tenants/{a.id}/deactivate", headers=world.headers("A", "admin"),
                          json={"confirm": True})
    assert refused.status_code == 403
    # A sub-account switched off on its own earlier stays off when A comes back.
    a2_off = client.post(f"/api/v1/tenants/{world.tenants['A2'].id}/deactivate", headers=world.headers("A", "admin"),
                         json={"confirm": True})
    assert a2_off.status_code == 200 and a2_off.json["is_active"] is False
    off = client.post(f"/api/v1/tenants/{a.id}/deactivate", headers=world.headers("P", "admin"),
                      json={"confirm": True})
    assert off.status_code == 200 and off.json["is_active"] is False and off.json["deactivated_at"]
    assert not Tenant.get_by_id(a1.id).is_active
    # Seats and the tenant count are freed: A, A1, A2 with 3 members each.
    assert licence.seat_count() == seats_before - 9 and licence.tenant_count() == tenants_before - 3

    # Its members and tokens are out.
    assert client.get("/api/v1/me", headers=world.headers("A1", "admin")).status_code == 401
    member = app.test_client()
    login(member, world.email("A", "admin"))
    assert member.get(f"/t/{a.id}/inbox").status_code == 404

    # Channels say why: 410 for a deactivated organisation.
    widget = client.post(f"/widget/{world.objects['A1']['channel'].public_key}/messages", json={"body": "hello?"})
    assert widget.status_code == 410 and "deactivated" in widget.get_json()["message"]
    hook = client.post(f"/hooks/{world.objects['A1']['shared_channel'].public_key}", data=b"{}",
                       content_type="application/json")
    assert hook.status_code == 410 and hook.get_json()["status"] == 410

    # The provider still reads everything, and changes nothing.
    provider = world.headers("P", "admin")
    conv = world.objects["A1"]["conversation"]
    listed = client.get(f"/api/v1/tenants/{a1.id}/conversations", headers=provider)
    assert listed.status_code == 200 and [c["id"] for c in listed.json["items"]] == [conv.id]
    assert client.get(f"/api/v1/conversations/{conv.id}/messages", headers=provider).status_code == 200
    write = client.patch(f"/api/v1/conversations/{conv.id}", headers=provider, json={"status": "resolved"})
    assert write.status_code == 403 and "read-only" in write.json["message"]
    assert client.post(f"/api/v1/tenants/{a1.id}/contacts", headers=provider, json={"name": "x"}).status_code == 403
    assert Conversation.get_by_id(conv.id).status == "open"
    staff = app.test_client()
    login(staff, world.email("P", "admin"))
    viewed = staff.get(f"/t/{a1.id}/conversations/{conv.id}")
    assert viewed.status_code == 200 and "is deactivated: what you see here is read-only" in viewed.get_data(True)
    assert "deactivated" in staff.get(f"/t/{world.tenants['P'].id}/admin/subaccounts").get_data(as_text=True)

    # Back on from the provider's sub-accounts page: A and A1, not A2 (off on its own before).
    token = csrf_token(staff, f"/t/{world.tenants['P'].id}/admin/subaccounts")
    assert staff.post(f"/t/{world.tenants['P'].id}/admin/subaccounts/state",
                      data={"child_id": str(a.id), "action": "reactivate", "csrf_token": token}).status_code == 302
    assert Tenant.get_by_id(a.id).is_active and Tenant.get_by_id(a1.id).is_active
    assert not Tenant.get_by_id(world.tenants["A2"].id).is_active
    assert client.get("/api/v1/me", headers=world.headers("A1", "admin")).status_code == 200
    assert client.post(f"/widget/{world.objects['A1']['channel'].public_key}/messages",
                       json={"body": "hello again"}).status_code in (200, 201)
    assert {"tenant.deactivate", "tenant.reactivate"} <= _actions(f"tenant:{a.id}")


def test_branding_is_inherited_unless_a_sub_account_sets_its_own(app, client, world):
    a, a1 = world.tenants["A"], world.tenants["A1"]
    h = world.headers("A", "admin")
    assert client.patch(f"/api/v1/tenants/{a.id}", headers=h, json={"brand_color": "#aa0000"}).status_code == 200
    inherited = client.get(f"/api/v1/tenants/{a1.id}/branding", headers=world.headers("A1", "agent")).json
    assert inherited == {"tenant_id": a1.id, "own_branding": False, "from_tenant_id": a.id, "brand_color": "#aa0000",
                         "logo": None}
    widget = client.get(f"/widget/{world.objects['A1']['channel'].public_key}").get_data(as_text=True)
    assert "--brand: #aa0000" in widget
    login(client, world.email("A1", "admin"))
    assert "--brand: #aa0000" in client.get(f"/t/{a1.id}/inbox").get_data(as_text=True)

    # Its own colour, from the branding page, then back to inheriting.
    token = csrf_token(client, f"/t/{a1.id}/admin/branding")
    assert client.post(f"/t/{a1.id}/admin/branding", data={"name": a1.name, "brand_color": "#00aa00",
                                                            "csrf_token": token}).status_code == 302
    assert "--brand: #00aa00" in client.get(f"/t/{a1.id}/inbox").get_data(as_text=True)
    assert "--brand: #00aa00" in client.get(f"/widget/{world.objects['A1']['channel'].public_key}").get_data(True)
    assert client.post(f"/t/{a1.id}/admin/branding", data={"name": a1.name, "brand_color": "#00aa00",
                                                            "inherit_branding": "1",
                                                            "csrf_token": token}).status_code == 302
    assert "--brand: #aa0000" in client.get(f"/t/{a1.id}/inbox").get_data(as_text=True)
    assert client.patch(f"/api/v1/tenants/{a1.id}", headers=world.headers("A1", "admin"),
                        json={"own_branding": True}).json["own_branding"] is True
    assert "tenant.branding" in _actions(f"tenant:{a1.id}")
