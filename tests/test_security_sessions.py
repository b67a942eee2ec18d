"""Server-side sessions: a copied cookie is worthless after logout, a password change,
deactivation, "sign out everywhere", an admin's kill, and the idle and absolute timeouts."""

from __future__ import annotations

from appliance.web.models.security import UserSession
from tests.helpers import PASSWORD, csrf_token, login

COOKIE = "appliance_session"


def _logged_in(app, world, key="A", role="agent"):
    client = app.test_client()
    assert login(client, world.email(key, role)).status_code == 302
    return client


def _copy(app, client):
    thief = app.test_client()
    thief.set_cookie(COOKIE, client.get_cookie(COOKIE).value)
    return thief


def _inbox(world, key="A"):
    return f"/t/{world.tenants[key].id}/inbox"


def _in(client, world, key="A") -> bool:
    return client.get(_inbox(world, key)).status_code == 200


def test_a_copied_cookie_stops_working_at_logout(app, world):
    client = _logged_in(app, world)
    thief = _copy(app, client)
    assert _in(thief, world)
    token = csrf_token(client, _inbox(world))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert thief.get(_inbox(world)).status_code == 302  # back to the login page
    with app.app_context():
        assert UserSession.select().where(UserSession.revoked_at.is_null()).count() == 0


def test_idle_and_absolute_timeouts_come_from_config(app, world, clock):
    settings = app.extensions["appliance_instance"].settings
    idle, absolute = settings["session_idle_timeout_seconds"], settings["session_absolute_timeout_seconds"]
    client = _logged_in(app, world)
    clock.advance(seconds=idle - 5)
    assert _in(client, world)  # a request: the idle clock starts again
    clock.advance(seconds=idle - 5)
    assert _in(client, world)
    clock.advance(seconds=idle + 1)
    assert not _in(client, world)
    client = _logged_in(app, world)
    for _ in range(absolute // (idle // 2) + 1):
        clock.advance(seconds=idle // 2)
        active = _in(client, world)
    assert not active


def test_a_password_change_ends_the_other_sessions(app, world):
    client = _logged_in(app, world)
    other = _logged_in(app, world)
    token = csrf_token(client, "/account")
    resp = client.post("/account/password", data={"current": PASSWORD, "new": "a-brand-new-passphrase",
                                                  "csrf_token": token})
    assert resp.status_code == 302
    assert _in(client, world) and not _in(other, world)
    weak = client.post("/account/password", data={"current": "a-brand-new-passphrase", "new": " " * 12,
                                                  "csrf_token": token})
    assert weak.status_code == 422


def test_sign_out_everywhere_else(app, world):
    client = _logged_in(app, world)
    others = [_logged_in(app, world) for _ in range(2)]
    token = csrf_token(client, "/account")
    assert client.post("/account/sessions/end-others", data={"csrf_token": token}).status_code == 302
    assert _in(client, world) and not any(_in(o, world) for o in others)


def test_an_admin_kills_a_members_sessions(app, client, world):
    victim = _logged_in(app, world, "A1", "agent")
    member = world.members[("A1", "agent")]
    # A sibling's admin cannot; the tenant's admin (or above) can.
    sibling = client.delete(f"/api/v1/members/{member.id}/sessions", headers=world.headers("A2", "admin"))
    assert sibling.status_code == 404
    resp = client.delete(f"/api/v1/members/{member.id}/sessions", headers=world.headers("A", "admin"))
    assert resp.status_code == 200 and resp.get_json()["ended"] == 1
    assert not _in(victim, world, "A1")


def test_a_tenant_admin_cannot_sign_out_someone_who_also_works_elsewhere(app, client, world):
    from appliance.web.models.tenancy import Membership

    with app.app_context():
        Membership.create(user=world.users[("P", "admin")], tenant=world.tenants["A1"], role="agent")
        member = Membership.get(Membership.user == world.users[("P", "admin")].id,
                                Membership.tenant == world.tenants["A1"].id)
    resp = client.delete(f"/api/v1/members/{member.id}/sessions", headers=world.headers("A1", "admin"))
    assert resp.status_code == 403


def test_deactivation_ends_sessions(app, client, world):
    victim = _logged_in(app, world, "B", "agent")
    resp = client.post(f"/api/v1/members/{world.members[('B', 'agent')].id}/deactivate",
                       headers=world.headers("P", "admin"), json={"confirm": True})
    assert resp.status_code == 200
    assert not _in(victim, world, "B")
    assert login(app.test_client(), world.email("B", "agent")).status_code == 401
