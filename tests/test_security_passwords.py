"""Password policy, NIST SP 800-63B style: length, and an offline list of common and
breached passwords shipped with the app; no composition rules."""

from __future__ import annotations

import pytest

from appliance.web.services.passwords import check_strength, common_passwords

WEAK = [" " * 10, " " * 30, "password123", "Password2024!", "qwertyuiop", "1234567890", "aaaaaaaaaaaa",
        "abcdefghijkl", "9876543210", "iloveyou12345", "  password  "]
GOOD = ["correct-horse-battery", "lantern orbit velvet", "Tr0ub4dor&3xyz", "all lowercase words here"]


@pytest.mark.parametrize("password", WEAK)
def test_weak_passwords_are_refused_with_a_reason(password):
    assert check_strength(password)


@pytest.mark.parametrize("password", GOOD)
def test_long_uncommon_passwords_pass_without_composition_rules(password):
    assert check_strength(password) is None


def test_the_list_is_packaged_and_large():
    words = common_passwords()
    assert len(words) > 20_000 and "123456" in words and "password" in words


def test_ten_spaces_are_refused_by_the_api(client, world):
    resp = client.post(f"/api/v1/tenants/{world.tenants['A'].id}/members", headers=world.headers("A", "admin"),
                       json={"email": "spaces@a.test", "password": " " * 10, "role": "agent"})
    assert resp.status_code == 422 and "password" in resp.get_json()["message"]
