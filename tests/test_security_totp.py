"""TOTP (RFC 6238): enrolment with a QR code made locally, recovery codes, a code works
once, wrong codes are throttled, provider admins can reset an enrolment (audited), and
with ``admin_totp_required`` an admin reaches nothing but enrolment until enrolled (API too)."""

from __future__ import annotations

import re

import pyotp

from appliance.web.models.audit import AuditEvent
from appliance.web.models.security import RecoveryCode, TotpCredential
from tests.helpers import PASSWORD, csrf_token, login

STEP = 30


def _enrol(app, client, clock):
    """Enrol the logged-in user; returns (secret, recovery codes)."""
    page = client.get("/account/totp")
    assert page.status_code == 200
    started = client.post("/account/totp/start", data={"csrf_token": csrf_token(client, "/account/totp")})
    html = started.get_data(as_text=True)
    assert "<svg" in html  # the QR code, inline, made by the appliance itself
    secret = re.search(r"Key: <code>([A-Z2-7]+)</code>", html).group(1)
    code = pyotp.TOTP(secret).at(clock())
    done = client.post("/account/totp/confirm", data={"code": code, "csrf_token": csrf_token(client, "/account/totp")})
    assert done.status_code == 201, done.get_data(as_text=True)[:500]
    codes = re.findall(r"<code>([0-9a-f]{8}-[0-9a-f]{8})</code>", done.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def _password_step(app, email):
    client = app.test_client()
    resp = login(client, email)
    return client, resp


def _code_step(client, code):
    token = csrf_token(client, "/login/totp")
    return client.post("/login/totp", data={"code": code, "csrf_token": token})


def test_enrolment_then_login_needs_a_code_that_works_once(app, world, clock):
    email = world.email("A", "agent")
    client = app.test_client()
    login(client, email)
    secret, codes = _enrol(app, client, clock)
    with app.app_context():
        row = TotpCredential.get(TotpCredential.user == world.users[("A", "agent")].id)
        assert secret.encode() not in bytes(row.secret)  # sealed at rest
        assert all(c not in rc.code_hash for rc in RecoveryCode.select() for c in codes)  # hashed
    # The code used to confirm enrolment is spent: the same step is refused.
    second, resp = _password_step(app, email)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/totp")
    assert second.get(f"/t/{world.tenants['A'].id}/inbox").status_code == 302  # half logged in is not logged in
    assert _code_step(second, pyotp.TOTP(secret).at(clock())).status_code == 401
    clock.advance(seconds=STEP)
    code = pyotp.TOTP(secret).at(clock())
    assert _code_step(second, code).status_code == 302
    assert second.get(f"/t/{world.tenants['A'].id}/inbox").status_code == 200
    # Replaying that code on another login fails.
    third, _ = _password_step(app, email)
    assert _code_step(third, code).status_code == 401
    # A recovery code works, once.
    assert _code_step(third, codes[0]).status_code == 302
    fourth, _ = _password_step(app, email)
    assert _code_step(fourth, codes[0]).status_code == 401


def test_wrong_codes_are_throttled(app, world, clock):
    email = world.email("A", "agent")
    client = app.test_client()
    login(client, email)
    secret, _ = _enrol(app, client, clock)
    clock.advance(seconds=STEP)
    guesser, _ = _password_step(app, email)
    for _ in range(5):
        assert _code_step(guesser, "000000").status_code == 401
    assert _code_step(guesser, pyotp.TOTP(secret).at(clock())).status_code == 429


def test_a_distributed_password_guess_does_not_lock_out_a_totp_user(app, world, clock):
    app.extensions["appliance_instance"].settings["throttle"]["login_per_account"] = 3
    email = world.email("B", "agent")
    client = app.test_client()
    login(client, email)
    _enrol(app, client, clock)
    for n in range(4):
        guess = app.test_client()
        guess.post("/login", data={"email": email, "password": "wrong-password-x", "csrf_token": csrf_token(guess)},
                   environ_base={"REMOTE_ADDR": f"192.0.2.{n + 1}"})
    _owner, resp = _password_step(app, email)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login/totp")


def test_required_admins_reach_only_enrolment_until_enrolled(app, client, world, clock):
    app.extensions["appliance_instance"].settings["admin_totp_required"] = True
    tenant = world.tenants["A"]
    admin = app.test_client()
    assert login(admin, world.email("A", "admin")).status_code == 302
    for path in ("/", f"/t/{tenant.id}/inbox", f"/t/{tenant.id}/admin/users", "/account"):
        resp = admin.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/totp"), path
    api = client.get(f"/api/v1/tenants/{tenant.id}", headers=world.headers("A", "admin"))
    assert api.status_code == 403 and "TOTP" in api.get_json()["message"]
    # Agents are not admins: unaffected.
    agent = app.test_client()
    login(agent, world.email("A", "agent"))
    assert agent.get(f"/t/{tenant.id}/inbox").status_code == 200
    assert client.get(f"/api/v1/tenants/{tenant.id}", headers=world.headers("A", "agent")).status_code == 200
    _enrol(app, admin, clock)
    assert admin.get(f"/t/{tenant.id}/admin/users").status_code == 200
    assert client.get(f"/api/v1/tenants/{tenant.id}", headers=world.headers("A", "admin")).status_code == 200


def test_the_setting_is_where_ansible_writes_it():
    from pathlib import Path

    from appliance.core.config import DEFAULTS

    template = Path(__file__).parents[1] / "roles/appliance/templates/var/lib/appliance/config.yml.j2"
    assert "'admin_totp_required': appliance_admin_totp_required | bool" in template.read_text()
    assert DEFAULTS["admin_totp_required"] is False  # a top-level key, as the template writes it


def test_provider_admins_reset_an_enrolment_and_it_is_audited(app, client, world, clock):
    user = world.users[("A1", "agent")]
    member = world.members[("A1", "agent")]
    enrolled = app.test_client()
    login(enrolled, user.email)
    _enrol(app, enrolled, clock)
    assert client.delete(f"/api/v1/members/{member.id}/totp", headers=world.headers("A", "admin")).status_code == 403
    resp = client.delete(f"/api/v1/members/{member.id}/totp", headers=world.headers("P", "admin"))
    assert resp.status_code == 200
    with app.app_context():
        assert not TotpCredential.select().where(TotpCredential.user == user.id).exists()
        event = AuditEvent.select().where(AuditEvent.action == "totp.reset").get()
        assert event.target == f"user:{user.id}" and event.actor_id == world.users[("P", "admin")].id
    assert enrolled.get(f"/t/{world.tenants['A1'].id}/inbox").status_code == 302  # its sessions ended
    again = app.test_client()
    resp = login(again, user.email)
    assert resp.status_code == 302 and not resp.headers["Location"].endswith("/login/totp")
    assert PASSWORD
