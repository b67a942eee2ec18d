"""Smaller hardening items: no caching of authenticated answers, one logo validator."""

from __future__ import annotations

import base64

import pytest

from tests.helpers import login

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f0d1d10000000049454e44ae426082"
)


@pytest.fixture
def sqlite_only(db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("header and validator behaviour does not depend on the database")


def test_authenticated_pages_and_api_answers_are_not_stored(sqlite_only, app, world):
    client = app.test_client()
    assert login(client, world.email("A", "agent")).status_code == 302
    page = client.get(f"/t/{world.tenants['A'].id}/inbox")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    api = client.get(f"/api/v1/tenants/{world.tenants['A'].id}/contacts", headers=world.headers("A", "agent"))
    assert api.status_code == 200
    assert api.headers["Cache-Control"] == "no-store"


def _patch_logo(client, world, logo):
    tenant = world.tenants["A"]
    return client.patch(f"/api/v1/tenants/{tenant.id}", headers=world.headers("A", "admin"), json={"logo": logo})


@pytest.mark.parametrize("logo", [
    "data:image/svg+xml;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode(),
    "data:image/png;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode(),  # a lying type
    "data:image/svg+xml,<svg onload=alert(1)>",
    "javascript:alert(1)",
    "data:image/png;base64,@@@",
], ids=["svg", "svg-declared-png", "svg-plain", "javascript", "bad-base64"])
def test_the_api_refuses_what_the_ui_refuses(sqlite_only, client, world, logo):
    answer = _patch_logo(client, world, logo)
    assert answer.status_code == 422
    assert "logo" in answer.get_json()["message"]


def test_the_api_accepts_a_raster_logo_and_stores_it_rebuilt(sqlite_only, client, world):
    logo = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
    answer = _patch_logo(client, world, logo)
    assert answer.status_code == 200
    from appliance.web.models.tenancy import Tenant

    assert Tenant.get_by_id(world.tenants["A"].id).logo == logo
    assert _patch_logo(client, world, "").status_code == 200
    assert Tenant.get_by_id(world.tenants["A"].id).logo is None
