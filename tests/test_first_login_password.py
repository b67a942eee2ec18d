"""A user given a password by someone else (the installer's first admin) must choose their
own at first login: until then the UI offers only the password change, and their API
tokens are refused; with TOTP required, enrolment comes right after."""

from __future__ import annotations

from appliance.web.models.tenancy import User
from tests.helpers import PASSWORD, csrf_token, login

NEW = "a-password-of-my-own-7"


def _flag(app, user, value=True):
    with app.app_context():
        User.update(must_change_password=value).where(User.id == user.id).execute()


def _change(client, current, new):
    return client.post("/account/password",
                       data={"current": current, "new": new, "csrf_token": csrf_token(client, "/account")})


def test_only_the_password_change_until_a_new_password_is_chosen(app, client, world):
    tenant = world.tenants["P"]
    admin = world.users[("P", "admin")]
    _flag(app, admin)
    browser = app.test_client()
    assert login(browser, admin.email).status_code == 302
    for path in ("/", f"/t/{tenant.id}/inbox", f"/t/{tenant.id}/admin/users", "/account/totp"):
        resp = browser.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/account"), path
    blocked = browser.post("/account/sessions/end-others", data={"csrf_token": csrf_token(browser, "/account")})
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/account")
    page = browser.get("/account")
    assert page.status_code == 200 and "choose your own to continue" in page.get_data(as_text=True)
    api = client.get(f"/api/v1/tenants/{tenant.id}", headers=world.headers("P", "admin"))
    assert api.status_code == 403 and "password" in api.get_json()["message"]

    assert _change(browser, PASSWORD, PASSWORD).status_code == 422  # the given one again is not a change
    assert browser.get(f"/t/{tenant.id}/inbox").status_code == 302
    assert _change(browser, PASSWORD, NEW).status_code == 302
    with app.app_context():
        assert not User.get_by_id(admin.id).must_change_password
    assert browser.get(f"/t/{tenant.id}/admin/users").status_code == 200
    assert "choose your own" not in browser.get("/account").get_data(as_text=True)
    assert client.get(f"/api/v1/tenants/{tenant.id}", headers=world.headers("P", "admin")).status_code == 200
    # Others are not affected.
    agent = app.test_client()
    login(agent, world.email("P", "agent"))
    assert agent.get(f"/t/{tenant.id}/inbox").status_code == 200


def test_with_totp_required_the_password_comes_first_then_enrolment(app, world):
    app.extensions["appliance_instance"].settings["admin_totp_required"] = True
    tenant = world.tenants["A"]
    admin = world.users[("A", "admin")]
    _flag(app, admin)
    browser = app.test_client()
    login(browser, admin.email)
    assert browser.get(f"/t/{tenant.id}/inbox").headers["Location"].endswith("/account")
    assert browser.get("/account").status_code == 200  # no redirect loop between the two gates
    assert _change(browser, PASSWORD, NEW).status_code == 302
    assert browser.get(f"/t/{tenant.id}/inbox").headers["Location"].endswith("/account/totp")
    assert browser.get("/account/totp").status_code == 200
