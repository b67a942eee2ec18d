"""After login the app goes only to a same-origin path, rebuilt from the parsed ``next``:
tabs, newlines and backslashes (which browsers drop or turn into slashes) never lead off-site
and never crash the login."""

from __future__ import annotations

import pytest

from appliance.web.auth import safe_next_path
from tests.helpers import PASSWORD, csrf_token

HOSTILE = [
    "/\t/evil.test/",  # what next=/%09/host/ decodes to: browsers drop the tab, leaving //evil.test/
    "//evil.test/",
    "/\\evil.test",
    "\\\\evil.test",
    "https://evil.test/",
    "javascript:alert(1)",
    "evil.test",
    "/\r\nSet-Cookie: x=1",
    "/ok\nLocation: //evil.test",
    "/%0d%0aX: y\r\n",
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_are_refused(target):
    rebuilt = safe_next_path(target)
    assert rebuilt is None or (rebuilt.startswith("/") and not rebuilt.startswith("//") and "\n" not in rebuilt)


def test_local_paths_survive_with_their_query():
    assert safe_next_path("/t/4/inbox?status=open&page=2") == "/t/4/inbox?status=open&page=2"
    assert safe_next_path("/t/4/inbox#frag") == "/t/4/inbox"


def _login_to(client, world, target):
    token = csrf_token(client)
    return client.post("/login", data={"email": world.email("A", "agent"), "password": PASSWORD, "next": target,
                                       "csrf_token": token})


@pytest.mark.parametrize("target", ["/\t/evil.test/", "/\r\n/evil.test", "//evil.test/", "/\\evil.test"])
def test_login_never_redirects_off_site(client, world, target):
    resp = _login_to(client, world, target)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert not location.startswith("//") and "evil.test" not in location, location


def test_a_next_with_crlf_in_the_query_string_answers_the_page_not_500(client, world):
    assert client.get("/login?next=/%0d%0aSet-Cookie:%20x=1").status_code == 200
    resp = client.get("/login?next=/%09/evil.test/")
    assert resp.status_code == 200 and "evil.test" not in resp.get_data(as_text=True)


def test_a_local_next_is_followed(client, world):
    target = f"/t/{world.tenants['A'].id}/inbox?status=open"
    resp = _login_to(client, world, target)
    assert resp.status_code == 302 and resp.headers["Location"].endswith(target)
