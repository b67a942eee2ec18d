"""Check-then-insert rules hold under concurrent requests: two admins racing for the
last licensed tenant or seat never both get it."""

from __future__ import annotations

import threading

from appliance.web.models.tenancy import Membership, Tenant, User
from appliance.web.services import tenants
from appliance.web.services.licence import LicenceLimitError
from appliance.web.services.passwords import hash_password


def _race(app, fn, n=6):
    database = app.extensions["database"]
    results, barrier = [], threading.Barrier(n)

    def run(i):
        with app.app_context(), database.connection_context():
            barrier.wait(10)
            try:
                fn(i)
                results.append("ok")
            except LicenceLimitError as exc:
                results.append(f"limit {exc.limit}")
            except Exception as exc:  # recorded, so the assertion shows what a loser got
                results.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_last_tenant_is_given_once(app, app_context):
    from appliance.core.licence.state import EVALUATION_MAX_TENANTS

    provider = tenants.create_provider("P")
    for i in range(EVALUATION_MAX_TENANTS - 1):
        tenants.create_child(provider, f"T{i}", "customer")
    results = _race(app, lambda i: tenants.create_child(provider, f"race {i}", "customer"))
    assert sorted(results) == ["limit max_tenants"] * 5 + ["ok"], results
    assert Tenant.select().where(Tenant.level > 1).count() == EVALUATION_MAX_TENANTS


def test_last_seat_is_given_once(app, app_context):
    from appliance.core.licence.state import EVALUATION_MAX_SEATS

    provider = tenants.create_provider("P")
    account = tenants.create_child(provider, "A", "customer")
    digest = hash_password("x" * 12)
    users = [User.create(email=f"u{i}@x.test", name="u", password_hash=digest)
             for i in range(EVALUATION_MAX_SEATS + 5)]
    for user in users[: EVALUATION_MAX_SEATS - 1]:
        tenants.add_member(account, user, "agent")
    rest = users[EVALUATION_MAX_SEATS - 1:]
    results = _race(app, lambda i: tenants.add_member(account, rest[i], "agent"))
    assert sorted(results) == ["limit max_seats"] * 5 + ["ok"], results
    assert Membership.select().where(Membership.tenant == account.id).count() == EVALUATION_MAX_SEATS
