"""The licence inside the app: limits at their boundaries, program gating, every state.

The world (tests/helpers.py) is P > A > (A1, A2), P > B > B1 with an admin, a
supervisor and an agent in each: 5 tenants and 15 operator seats below the provider.
Licences are signed by a throwaway key made a trust root through the environment
variable, as vendor engineers would in a lab. Time is the test's own (the ``clock``
fixture, standing at ``NOW`` until a test moves it); moves go forward, like the clock
mark, except where a test sets the clock back on purpose.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from appliance.core.licence.format import armour, canonical_json, parse_armour
from appliance.core.licence.testing import TestSigner
from appliance.core.licence.trust import TRUST_ROOT_ENV
from appliance.web.models.licence import LicenceClock
from appliance.web.models.tenancy import Membership, Tenant
from appliance.web.services import licence
from tests.helpers import START, csrf_token, login, make_instance, running_app, trust_test_signer

NOW = START  # where every test's clock starts
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


@pytest.fixture
def app(tmp_path, monkeypatch, signer, db_url):
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    with running_app(make_instance(tmp_path / "home", db_url)) as app:
        yield app


def install(app, signer, **fields):
    fields.setdefault("now", NOW)
    with app.app_context():
        lic, created = licence.service().install(signer.issue(**fields))
        assert created
        return lic


def store(app, signer, **fields):
    """Store without the install-time date checks (an old licence, for degraded states)."""
    fields.setdefault("now", NOW)
    with app.app_context():
        service = licence.service()
        return service.store(service.verify(signer.issue(**fields)))


def assign(app, key_tenant, *programs):
    with app.app_context():
        for program in programs:
            licence.assign_program(key_tenant, program, effective_from=NOW - DAY)


def ui(app, world, key, role):
    client = app.test_client()
    assert login(client, world.email(key, role)).status_code == 302
    return client


def post_form(client, path, data, csrf_path):
    return client.post(path, data=dict(data, csrf_token=csrf_token(client, csrf_path)))


def api_create_child(client, world, parent="P", name="New"):
    return client.post(
        f"/api/v1/tenants/{world.tenants[parent].id}/children",
        json={"name": name, "kind": "customer" if parent == "P" else "brand"},
        headers=world.headers(parent, "admin"),
    )


def api_add_member(client, world, tenant, email, role="agent"):
    return client.post(
        f"/api/v1/tenants/{world.tenants[tenant].id}/members",
        json={"email": email, "name": "New Person", "password": "a-long-password-9", "role": role},
        headers=world.headers(tenant, "admin"),
    )


def count_tenants(app):
    with app.app_context():
        return licence.tenant_count()


# -- limits at their boundaries ----------------------------------------------------------


def test_tenant_limit_api_n_allowed_n_plus_one_refused(app, client, world, signer, clock):
    install(app, signer, max_tenants=6, programs=["api"])
    assign(app, world.tenants["A"], "api")
    assign(app, world.tenants["B"], "api")
    first = api_create_child(client, world, "P", "Sixth")
    assert first.status_code == 201, first.get_json()
    refused = api_create_child(client, world, "P", "Seventh")
    assert refused.status_code == 403
    body = refused.get_json()
    assert "maximum tenants is 6" in body["message"] and "6 in use" in body["message"]
    # Sub-accounts count too, whoever creates them.
    assert api_create_child(client, world, "A", "A3").status_code == 403
    assert count_tenants(app) == 6


def test_tenant_limit_ui_n_allowed_n_plus_one_refused(app, world, signer, clock):
    install(app, signer, max_tenants=6)
    client = ui(app, world, "A", "admin")
    path = f"/t/{world.tenants['A'].id}/admin/subaccounts"
    ok = post_form(client, path, {"name": "A3", "kind": "brand"}, path)
    assert ok.status_code == 302
    refused = post_form(client, path, {"name": "A4", "kind": "brand"}, path)
    assert refused.status_code == 403
    assert "maximum tenants is 6" in refused.get_data(as_text=True)
    assert count_tenants(app) == 6


def test_seat_limit_api_n_allowed_n_plus_one_refused(app, client, world, signer, clock):
    install(app, signer, max_seats=16, programs=["api"])
    assign(app, world.tenants["A"], "api")
    assert api_add_member(client, world, "A", "sixteenth@a.test").status_code == 202
    refused = api_add_member(client, world, "A", "seventeenth@a.test")
    assert refused.status_code == 403
    assert "maximum operator seats is 16" in refused.get_json()["message"]
    # Provider staff are not operator seats.
    assert api_add_member(client, world, "P", "staff@p.test").status_code == 202
    with app.app_context():
        assert licence.seat_count() == 16


def test_seat_limit_ui_n_allowed_n_plus_one_refused(app, world, signer, clock):
    install(app, signer, max_seats=16)
    client = ui(app, world, "B", "admin")
    path = f"/t/{world.tenants['B'].id}/admin/users"
    form = {"name": "N", "password": "a-long-password-9", "role": "agent"}
    assert post_form(client, path, dict(form, email="n1@b.test"), path).status_code == 302
    refused = post_form(client, path, dict(form, email="n2@b.test"), path)
    assert refused.status_code == 403
    assert "maximum operator seats is 16" in refused.get_data(as_text=True)
    with app.app_context():
        assert not Membership.select().join(Tenant).where(Tenant.id == world.tenants["B"].id).count() > 4


def test_program_limit_api_licensed_allowed_others_refused(app, client, world, signer, clock):
    install(app, signer, programs=["webchat", "email", "api"])
    assign(app, world.tenants["P"].children.where(Tenant.name == "Tenant A").get(), "api")
    headers = world.headers("P", "admin")
    url = f"/api/v1/tenants/{world.tenants['B'].id}/programs"
    for program in ("webchat", "email", "api"):
        assert client.post(url, json={"program": program}, headers=headers).status_code == 201
    refused = client.post(url, json={"program": "voice"}, headers=headers)
    assert refused.status_code == 403
    assert "does not include the 'voice' program" in refused.get_json()["message"]
    listed = client.get(url, headers=world.headers("B", "agent")).get_json()
    assert "usable" in listed, listed
    assert listed["usable"] == ["api", "email", "webchat"]
    # Only the provider assigns programs.
    own = client.post(f"/api/v1/tenants/{world.tenants['A'].id}/programs", json={"program": "webchat"},
                      headers=world.headers("A", "admin"))
    assert own.status_code == 403 and "provider" in own.get_json()["message"]


def test_program_limit_ui_licensed_allowed_others_refused(app, world, signer, clock):
    install(app, signer, programs=["webchat", "email"])
    client = ui(app, world, "P", "admin")
    page = "/licence"
    path = f"/t/{world.tenants['B'].id}/licence/programs"
    assert post_form(client, path, {"program": "webchat", "back": "provider"}, page).status_code == 302
    refused = post_form(client, path, {"program": "voice", "back": "provider"}, page)
    assert refused.status_code == 403
    assert "does not include the &#39;voice&#39; program" in refused.get_data(as_text=True)
    with app.app_context():
        assert licence.tenant_programs(world.tenants["B"]) == {"webchat"}


# -- programs gate features ---------------------------------------------------------------


def test_api_needs_the_api_program_and_says_why(app, client, world, signer, clock):
    install(app, signer, programs=["webchat", "api"])
    refused = client.get("/api/v1/me", headers=world.headers("A", "agent"))
    assert refused.status_code == 403
    assert "API is not available to Tenant A" in refused.get_json()["message"]
    assert "not assigned" in refused.get_json()["message"]
    assign(app, world.tenants["A"], "api")
    assert client.get("/api/v1/me", headers=world.headers("A", "agent")).status_code == 200
    # Sub-accounts inherit their account's programs; the other account does not.
    assert client.get("/api/v1/me", headers=world.headers("A1", "agent")).status_code == 200
    assert client.get("/api/v1/me", headers=world.headers("B", "agent")).status_code == 403


def test_future_dated_program_starts_on_its_date(app, client, world, signer, clock):
    install(app, signer, programs=["api"])
    with app.app_context():
        licence.assign_program(world.tenants["B"], "api", effective_from=NOW + 10 * DAY)
    refused = client.get("/api/v1/me", headers=world.headers("B", "agent"))
    assert refused.status_code == 403 and "starts on" in refused.get_json()["message"]
    clock.set(NOW + 11 * DAY)
    assert client.get("/api/v1/me", headers=world.headers("B", "agent")).status_code == 200


def test_web_chat_widget_and_channels_need_their_programs(app, client, world, signer, clock):
    install(app, signer, programs=["webchat", "messengers", "api"])
    assign(app, world.tenants["B"], "api")
    channel = world.objects["B"]["channel"]  # a webchat channel
    refused = client.get(f"/widget/{channel.public_key}")
    assert refused.status_code == 403
    assert "Web chat is not available to Tenant B" in refused.get_json()["message"]
    made = client.post(f"/api/v1/tenants/{world.tenants['B'].id}/channels", json={"kind": "webchat", "name": "x"},
                       headers=world.headers("B", "admin"))
    assert made.status_code == 403 and "'webchat' program" in made.get_json()["message"]
    email = client.post(f"/api/v1/tenants/{world.tenants['B'].id}/channels", json={"kind": "email", "name": "x"},
                        headers=world.headers("B", "admin"))
    assert email.status_code == 403 and "licence does not include the 'email' program" in email.get_json()["message"]
    assign(app, world.tenants["B"], "webchat")
    assert client.get(f"/widget/{channel.public_key}").status_code == 200


def test_evaluation_opens_every_program(app, client, world):
    assert client.get("/api/v1/me", headers=world.headers("B", "agent")).status_code == 200
    assert client.get(f"/widget/{world.objects['B']['channel'].public_key}").status_code == 200


# -- every state: data stays readable, agents keep answering --------------------------------

STATES = {
    # name: (licence fields or None, when, expected status, can grow)
    "evaluation": (None, NOW + DAY, "evaluation", True),
    "evaluation_ended": (None, NOW + 31 * DAY, "evaluation_ended", False),
    "not_yet_valid": ({"valid_from": NOW + 60 * DAY, "days": 400}, NOW + DAY, "not_yet_valid", True),
    "valid": ({"days": 365}, NOW + 10 * DAY, "valid", True),
    "expiring_soon": ({"days": 365}, NOW + 340 * DAY, "expiring_soon", True),
    "grace": ({"days": 365, "grace_days": 14}, NOW + 370 * DAY, "grace", True),
    "degraded": ({"days": 365, "grace_days": 14}, NOW + 400 * DAY, "degraded", False),
}


@pytest.mark.parametrize("name", list(STATES))
def test_every_state_keeps_data_readable_and_agents_answering(app, client, world, signer, clock, name):
    fields, when, status, can_grow = STATES[name]
    if fields is not None:
        install(app, signer, programs=["webchat", "api"], max_tenants=20, max_seats=50, **fields)
        if name != "not_yet_valid":
            assign(app, world.tenants["A"], "api")
            assign(app, world.tenants["P"].children.where(Tenant.name == "Tenant B").get(), "api")
    clock.set(when)
    with app.app_context():
        state = licence.service().state()
    assert state.status == status and state.can_grow is can_grow

    objs = world.objects["A"]
    conv, contact = objs["conversation"], objs["contact"]
    headers = world.headers("A", "agent")
    # API: every conversation, message and contact is there.
    listed = client.get(f"/api/v1/tenants/{world.tenants['A'].id}/conversations?status=open", headers=headers)
    assert listed.status_code == 200 and conv.id in [c["id"] for c in listed.get_json()["items"]]
    msgs = client.get(f"/api/v1/conversations/{conv.id}/messages", headers=headers).get_json()["items"]
    assert "hello from A" in [m["body"] for m in msgs]
    got = client.get(f"/api/v1/contacts/{contact.id}", headers=headers)
    assert got.status_code == 200 and got.get_json()["name"] == "Contact A"
    contacts = client.get(f"/api/v1/tenants/{world.tenants['A'].id}/contacts", headers=headers).get_json()
    assert contact.id in [c["id"] for c in contacts["items"]]
    # Agents keep answering.
    reply = client.post(f"/api/v1/conversations/{conv.id}/messages", json={"body": f"answer in {name}"},
                        headers=headers)
    assert reply.status_code == 201
    # UI: the same, for an agent of the sub-account and of the account.
    agent = ui(app, world, "A", "agent")
    page = agent.get(f"/t/{world.tenants['A'].id}/conversations/{conv.id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "hello from A" in text and f"answer in {name}" in text
    contact_page = agent.get(f"/t/{world.tenants['A'].id}/contacts/{contact.id}")
    assert contact_page.status_code == 200 and "Contact A" in contact_page.get_data(as_text=True)
    path = f"/t/{world.tenants['A'].id}/conversations/{conv.id}/reply"
    assert post_form(agent, path, {"body": "ui answer", "kind": "out"}, path.rsplit("/", 1)[0]).status_code == 302
    sub = ui(app, world, "A1", "agent")
    a1 = world.objects["A1"]["conversation"]
    assert "hello from A1" in sub.get(f"/t/{world.tenants['A1'].id}/conversations/{a1.id}").get_data(as_text=True)
    # Growth follows the state, and a refusal says why.
    created = api_create_child(client, world, "P", f"New in {name}")
    if can_grow:
        assert created.status_code == 201, created.get_json()
    else:
        assert created.status_code == 403
        message = created.get_json()["message"]
        assert "No tenants can be added" in message and "stay available" in message
        seat = api_add_member(client, world, "A", f"late@{name}.test")
        assert seat.status_code == 403 and "No operator seats can be added" in seat.get_json()["message"]
        if fields is not None:
            program = client.post(f"/api/v1/tenants/{world.tenants['B'].id}/programs", json={"program": "webchat"},
                                  headers=world.headers("P", "admin"))
            assert program.status_code == 403 and "No programs can be added" in program.get_json()["message"]


def test_banner_is_on_every_page_in_grace(app, world, signer, clock):
    install(app, signer, days=365, grace_days=14)
    clock.set(NOW + 370 * DAY)
    agent = ui(app, world, "A1", "agent")
    inbox = agent.get(f"/t/{world.tenants['A1'].id}/inbox").get_data(as_text=True)
    assert "grace period" in inbox
    admin = ui(app, world, "B", "admin")
    assert "grace period" in admin.get(f"/t/{world.tenants['B'].id}/admin/users").get_data(as_text=True)


def test_no_banner_when_licence_is_valid_and_production_like(app, world, signer, clock, monkeypatch):
    install(app, signer)
    with app.app_context():
        # Pretend the trust root was shipped: then a valid licence needs no banner.
        service = licence.service()
        for key in service.trust.keys.values():
            object.__setattr__(key, "production", True)
        service._verified.clear()
    agent = ui(app, world, "A", "agent")
    assert 'class="banner banner-' not in agent.get(f"/t/{world.tenants['A'].id}/inbox").get_data(as_text=True)


# -- clock rollback ------------------------------------------------------------------------


def test_clock_rollback_is_reported_and_does_not_extend_the_licence(app, client, world, signer, clock):
    install(app, signer, days=100, grace_days=0, programs=["api"])
    assign(app, world.tenants["A"], "api")
    clock.set(NOW + 150 * DAY)  # seen once, after expiry
    assert client.get("/api/v1/me", headers=world.headers("A", "agent")).status_code == 200
    clock.set(NOW + 10 * DAY)  # clock set back into the licence period
    with app.app_context():
        state = licence.service().state()
    assert state.clock_rollback and state.status == "degraded"
    assert api_create_child(client, world, "P").status_code == 403
    admin = ui(app, world, "P", "admin")
    page = admin.get("/licence").get_data(as_text=True)
    assert "behind the latest time" in page and "set back" in page


def test_edited_mark_in_database_is_detected(app, world, signer, clock):
    clock.set(NOW + 20 * DAY)
    with app.app_context():
        licence.service().state()
        LicenceClock.update(high_water="2020-01-01T00:00:00Z").where(LicenceClock.id == 1).execute()
        (app.extensions["appliance_instance"].home / licence.MARK_FILE).unlink()
        state = licence.service().state()
    assert any("edited or damaged" in m.text for m in state.messages)


# -- installing ----------------------------------------------------------------------------


def test_licence_page_install_and_refusals(app, world, signer, clock):
    client = ui(app, world, "P", "admin")
    page_path = "/licence"
    page = client.get(page_path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Evaluation mode" in html and 'id="licence-usage"' in html
    install_path = "/licence/install"

    text = signer.issue(now=NOW, licence_id="LIC-UI-1", max_tenants=40)
    parts = parse_armour(text)
    forged_payload = json.loads(parts.payload_bytes)
    forged_payload["max_tenants"] = 4000
    forged = armour(parts.key_id, canonical_json(forged_payload), parts.signature)
    refused = post_form(client, install_path, {"licence": forged}, page_path)
    assert refused.status_code == 422
    assert "Licence refused" in refused.get_data(as_text=True)
    assert "changed after the vendor signed it" in refused.get_data(as_text=True)

    stranger = TestSigner().issue(now=NOW)
    unknown = post_form(client, install_path, {"licence": stranger}, page_path)
    assert unknown.status_code == 422 and "does not trust" in unknown.get_data(as_text=True)

    other = signer.issue(now=NOW, licence_id="LIC-ELSE", installation_id="00000000-0000-4000-8000-000000000000")
    wrong = post_form(client, install_path, {"licence": other}, page_path)
    assert wrong.status_code == 422 and "is for installation 00000000" in wrong.get_data(as_text=True)

    # The file upload works as well as pasting.
    ok = client.post(install_path, data={"csrf_token": csrf_token(client, page_path),
                                         "licence_file": (io.BytesIO(text.encode()), "acme.lic")},
                     content_type="multipart/form-data")
    assert ok.status_code == 302
    html = client.get(page_path).get_data(as_text=True)
    assert "LIC-UI-1" in html and "(in effect)" in html and "Licensed" in html
    assert "non-production trust root is in use" in html
    assert ">5</td><td>40</td>" in html  # tenants in use against the limit
    # The account admin sees its tenant's page, not the installation's, and cannot install.
    a_admin = ui(app, world, "A", "admin")
    a_path = f"/t/{world.tenants['A'].id}/licence"
    own = a_admin.get(a_path)
    assert own.status_code == 200 and "Licence and programs: Tenant A" in own.get_data(as_text=True)
    assert a_admin.get("/licence").status_code == 404
    assert post_form(a_admin, "/licence/install", {"licence": text}, a_path).status_code == 404
    # The provider's own tenant page leads to the installation page.
    assert client.get(f"/t/{world.tenants['P'].id}/licence").status_code == 302


def test_licence_bound_to_this_installation_installs(app, signer, clock):
    with app.app_context():
        mine = licence.service().installation_id()
    lic = install(app, signer, installation_id=mine)
    assert lic.installation_id == mine


def test_expired_licence_is_refused_at_install(app, signer, clock):
    with app.app_context(), pytest.raises(Exception) as info:
        licence.service().install(signer.issue(now=NOW - 400 * DAY, days=365, grace_days=0))
    assert getattr(info.value, "reason", None) == "expired"


def test_stored_licence_edited_in_database_is_ignored(app, signer, clock):
    row = store(app, signer, max_seats=5)
    parts = parse_armour(row.text)
    payload = json.loads(parts.payload_bytes)
    payload["max_seats"] = 5000
    row.text = armour(parts.key_id, canonical_json(payload), parts.signature)
    row.save()
    with app.app_context():
        service = licence.service()
        service._verified.clear()
        state = service.state()
    assert state.licence is None and state.limits.max_seats != 5000
    assert any("is ignored" in m.text for m in state.messages)


def test_api_licence_state_and_install(app, client, world, signer, clock):
    data = client.get("/api/v1/licence", headers=world.headers("P", "admin")).get_json()
    assert data["status"] == "evaluation" and data["usage"] == {"tenants": 5, "seats": 15, "program_assignments": {}}
    short = client.get("/api/v1/licence", headers=world.headers("A", "agent")).get_json()
    assert short["status"] == "evaluation" and "usage" not in short
    text = signer.issue(now=NOW, licence_id="LIC-API-1", programs=["api"])
    refused = client.post("/api/v1/licence", json={"text": text}, headers=world.headers("A", "admin"))
    assert refused.status_code == 403
    done = client.post("/api/v1/licence", json={"text": text}, headers=world.headers("P", "admin"))
    assert done.status_code == 201 and done.get_json()["licence"]["licence_id"] == "LIC-API-1"
    again = client.post("/api/v1/licence", json={"text": text}, headers=world.headers("P", "admin"))
    assert again.status_code == 200 and again.get_json()["installed"] is False
    bad = client.post("/api/v1/licence", json={"text": text.replace("Format: 1", "Format: 9")},
                      headers=world.headers("P", "admin"))
    assert bad.status_code == 422 and bad.get_json()["reason"] == "format"


# -- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_install_limits_and_clock_mark(tmp_path, monkeypatch, signer, clock, pg_url):
    """The same storage on PostgreSQL: licence rows, the mark's compare-and-swap, counting."""
    from appliance.web import create_app
    from appliance.web.services import tenants

    signer.write_public(tmp_path / "trust")
    monkeypatch.setenv(TRUST_ROOT_ENV, str(tmp_path / "trust"))
    app = create_app(instance=make_instance(tmp_path / "home", pg_url))
    database = app.extensions["database"]
    with app.app_context(), database.connection_context():
        service = licence.service()
        assert LicenceClock.get_by_id(1).evaluation_started_at is not None  # created by the migration
        service.install(signer.issue(now=NOW, max_tenants=1))
        provider = tenants.create_provider("P")
        tenants.create_child(provider, "One", "customer")
        with pytest.raises(licence.LicenceLimitError) as info:
            tenants.create_child(provider, "Two", "customer")
        assert info.value.limit == "max_tenants"
        clock.set(NOW + 5 * DAY)
        service.state()
        assert LicenceClock.get_by_id(1).high_water.startswith((NOW + 5 * DAY).strftime("%Y-%m-%d"))
        clock.set(NOW + DAY)
        state = service.state()
        assert state.clock_rollback and state.effective_now == NOW + 5 * DAY
        assert LicenceClock.get_by_id(1).high_water.startswith((NOW + 5 * DAY).strftime("%Y-%m-%d"))
