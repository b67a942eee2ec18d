"""The tenant isolation matrix.

Every URL rule of the app is enumerated. Each needs a rule here (UI) or an ``@spec``
(API), so a new route without one fails this test. For every rule, every principal
(a user or token of each role in each tenant of the tree) and every target tenant:

- a principal that does not reach the target tenant gets 404 (403 is accepted too),
  siblings included; shared objects of an ancestor are readable (GET) from below;
- a principal that reaches it (its own tenant or a descendant: rights flow up) with a
  role below the rule's minimum gets 403;
- one with enough role is let through (any answer but 401/403/404, and never a 5xx).

Mutating requests are sent with an empty body, so a principal that is let through is
stopped by validation and nothing changes; DELETEs are only sent where they must fail.
"""

from __future__ import annotations

import pytest

from appliance.web.models.tenancy import role_rank
from tests.helpers import ARG_OBJECT, ROLES, TREE, login, rule_url

PUBLIC = {
    "static",
    "auth.login",
    "auth.login_totp",
    "auth.logout",
    "api.openapi",
    "business.apply_public",  # the provider's public application form
    "auth.password_reset",  # the one-time link an admin made: the link itself is the key
}
# Routes that need a login but no tenant: (minimum role anywhere, sample path).
UNSCOPED = {"auth.home", "auth.switch", "account.index", "account.totp", "account.totp_start", "account.totp_confirm",
            "account.recovery_codes", "account.password", "account.name", "account.end_other_sessions",
            "account.answer_invitation"}

# UI GET endpoints that may read a parent's shared object: endpoint -> shared object kind.
UI_SHARED_READ = {"knowledge.article": "shared_article"}
API_SHARED_READ = {"api.get_channel": "shared_channel", "api.get_article": "shared_article",
                   "api.get_article_html": "shared_article", "api.get_label": "shared_label"}


def _reach(principal_key: str, target_key: str) -> bool:
    """Does a membership at principal_key reach target_key (itself or a descendant)?"""
    node = target_key
    while node is not None:
        if node == principal_key:
            return True
        node = TREE[node]
    return False


def _below(principal_key: str, owner_key: str) -> bool:
    return principal_key != owner_key and _reach(owner_key, principal_key)


def _rules(app):
    return [r for r in app.url_map.iter_rules()]


def test_every_route_has_a_rule(app):
    missing = []
    for rule in _rules(app):
        endpoint = rule.endpoint
        if endpoint in PUBLIC or endpoint in UNSCOPED or endpoint.startswith("public."):
            continue
        if endpoint.startswith("api."):
            if getattr(app.view_functions[endpoint], "api_spec", None) is None:
                missing.append(endpoint)
        elif getattr(app.view_functions[endpoint], "access_rule", None) is None:
            missing.append(endpoint)
        for arg in rule.arguments:
            if arg != "tenant_id" and arg not in ARG_OBJECT and arg not in ("key", "filename"):
                missing.append(f"{endpoint}: argument {arg}")
    assert not missing, f"routes without an isolation rule: {missing}"


def _ui_rules(app) -> dict:
    """endpoint -> (scope, minimum role), declared by appliance.web.auth's view decorators."""
    out = {}
    for endpoint, view in app.view_functions.items():
        rule = getattr(view, "access_rule", None)
        if rule is not None and not endpoint.startswith("api."):
            out[endpoint] = rule
    return out


def _expected(min_role, principal_key, role, target_key, shared_read):
    if _reach(principal_key, target_key):
        return "allow" if role_rank(role) >= role_rank(min_role) else "forbid"
    if shared_read and _below(principal_key, target_key):
        return "allow"
    return "hide"


def _check(status, expected, context):
    if expected == "allow":
        # Let through means answered: a 500 is a crash behind the access check, not access.
        assert status not in (401, 403, 404) and status < 500, f"{context}: expected access, got {status}"
    elif expected == "forbid":
        assert status == 403, f"{context}: expected 403, got {status}"
    else:
        assert status in (403, 404), f"{context}: expected 404, got {status}"


@pytest.mark.timeout(900)  # every API route times every principal and tenant: it grows with the API
def test_api_matrix(app, client, world):
    checked = 0
    for rule in _rules(app):
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        spec = app.view_functions[rule.endpoint].api_spec
        assert spec["shared_read"] == (rule.endpoint in API_SHARED_READ), f"{rule.endpoint}: shared_read disagrees"
        scoped = bool(rule.arguments)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for principal_key in TREE:
                for role in ROLES:
                    headers = world.headers(principal_key, role)
                    targets = TREE if scoped else [principal_key]
                    for target_key in targets:
                        shared_kind = API_SHARED_READ.get(rule.endpoint) if method == "GET" else None
                        variants = [None, shared_kind] if shared_kind else [None]
                        for variant in variants:
                            expected = _expected(spec["role"], principal_key, role, target_key, variant is not None)
                            provider_admin = _expected(spec["role"], principal_key, role, "P", False) == "allow"
                            if spec["scope"] == "provider" and expected == "allow" and not provider_admin:
                                expected = "forbid"  # reaching the tenant is not enough: provider admins only
                            if method == "DELETE" and expected == "allow":
                                continue
                            path = rule_url(rule, world, target_key, variant)
                            resp = client.open(path, method=method, headers=headers,
                                               json={} if method in ("POST", "PATCH", "PUT") else None)
                            _check(resp.status_code, expected,
                                   f"{method} {rule.endpoint} as {role}@{principal_key} on {target_key}"
                                   f"{' (shared)' if variant else ''}")
                            checked += 1
    assert checked > 1000


def test_api_needs_a_token(app, client, world):
    for rule in _rules(app):
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            path = rule_url(rule, world, "A")
            assert client.open(path, method=method).status_code == 401, rule.endpoint
            bad = {"Authorization": "Bearer apl_0000_not-a-token"}
            assert client.open(path, method=method, headers=bad).status_code == 401, rule.endpoint


@pytest.mark.parametrize("role", ROLES)
def test_ui_matrix(app, world, role):
    app.config["WTF_CSRF_ENABLED"] = False  # CSRF has its own tests; here only access counts
    rules = _ui_rules(app)
    checked = 0
    for principal_key in TREE:
        client = app.test_client()
        assert login(client, world.email(principal_key, role)).status_code == 302
        for rule in _rules(app):
            if rule.endpoint not in rules:
                continue
            scope, minimum = rules[rule.endpoint]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                targets = TREE if scope == "tenant" else ["P"]
                for target_key in targets:
                    shared_kind = UI_SHARED_READ.get(rule.endpoint) if method == "GET" else None
                    for variant in [None, shared_kind] if shared_kind else [None]:
                        expected = _expected(minimum, principal_key, role, target_key, variant is not None)
                        if method != "GET" and expected == "allow":
                            continue  # a form POST that is let through would change data
                        viewer = None if _reach(principal_key, target_key) else principal_key
                        path = rule_url(rule, world, target_key, variant, viewer) if scope == "tenant" else rule.rule
                        resp = client.open(path, method=method, data={})
                        _check(resp.status_code, expected,
                               f"{method} {path} ({rule.endpoint}) as {role}@{principal_key} on {target_key}"
                               f"{' (shared)' if variant else ''}: {resp.get_data(as_text=True)[:300]!r}")
                        checked += 1
    assert checked > 500


def _api_requests(app, world, principal_key):
    """(method, path, spec, target) for every API rule and target tenant, as in the matrix."""
    for rule in _rules(app):
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        spec = app.view_functions[rule.endpoint].api_spec
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for target_key in TREE if rule.arguments else [principal_key]:
                yield method, rule_url(rule, world, target_key), spec, target_key


def test_api_matrix_for_tokens_of_removed_demoted_and_deactivated_users(app, client, world):
    """A token acts with its creator's rights at each request: removed and deactivated
    creators' tokens answer 401 everywhere; a demoted creator's token gets the new role."""
    from appliance.web.models.tenancy import Membership, User

    Membership.delete().where(Membership.id == world.members[("A", "admin")].id).execute()
    User.update(is_active=False).where(User.id == world.users[("A1", "admin")].id).execute()
    Membership.update(role="agent").where(Membership.id == world.members[("B", "admin")].id).execute()
    checked = 0
    for key in ("A", "A1"):
        for method, path, _spec, _target in _api_requests(app, world, key):
            resp = client.open(path, method=method, headers=world.headers(key, "admin"),
                               json={} if method in ("POST", "PATCH", "PUT") else None)
            assert resp.status_code == 401, f"{method} {path} with the token of a cut admin@{key}: {resp.status_code}"
            checked += 1
    for method, path, spec, target in _api_requests(app, world, "B"):
        expected = _expected(spec["role"], "B", "agent", target, False)
        if spec["scope"] == "provider" and expected == "allow":
            expected = "forbid"
        if method == "DELETE" and expected == "allow":
            continue
        resp = client.open(path, method=method, headers=world.headers("B", "admin"),
                           json={} if method in ("POST", "PATCH", "PUT") else None)
        _check(resp.status_code, expected, f"{method} {path} with the token of admin@B demoted to agent")
        checked += 1
    assert checked > 100


def test_totp_required_admins_reach_only_enrolment(app, client, world):
    """With admin_totp_required on, an admin without TOTP gets the enrolment page from every
    UI route and 403 from every API route; other roles are unaffected."""
    app.extensions["appliance_instance"].settings["admin_totp_required"] = True
    app.config["WTF_CSRF_ENABLED"] = False
    rules = _ui_rules(app)
    checked = 0
    for key in ("P", "A", "B1"):
        ui = app.test_client()
        assert login(ui, world.email(key, "admin")).status_code == 302
        for rule in _rules(app):
            if rule.endpoint not in rules and rule.endpoint not in UNSCOPED - {"account.totp", "account.totp_start",
                                                                                "account.totp_confirm"}:
                continue
            scope = rules.get(rule.endpoint, ("none",))[0]
            path = rule_url(rule, world, key) if scope == "tenant" else rule.rule
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                resp = ui.open(path, method=method, data={})
                assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/totp"), (
                    f"{method} {path} as an admin without TOTP: {resp.status_code}")
                checked += 1
        for method, path, _spec, _target in _api_requests(app, world, key):
            resp = client.open(path, method=method, headers=world.headers(key, "admin"),
                               json={} if method in ("POST", "PATCH", "PUT") else None)
            assert resp.status_code == 403, f"{method} {path} with a TOTP-less admin's token: {resp.status_code}"
            checked += 1
    agent = app.test_client()
    assert login(agent, world.email("A", "agent")).status_code == 302
    assert agent.get(f"/t/{world.tenants['A'].id}/inbox").status_code == 200
    assert client.get("/api/v1/me", headers=world.headers("A", "supervisor")).status_code == 200
    assert checked > 200
