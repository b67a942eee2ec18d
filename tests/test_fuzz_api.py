"""Schema-generated requests against every API operation, over real HTTP on loopback:
no answer is a 5xx and every answer matches the response schema the document declares.

The number of examples per operation is ``FUZZ_EXAMPLES`` (default 40, about 1,800
requests over the 45 operations); raise it for a longer run. The token is the provider
admin's, which reaches every tenant; the fuzzer may revoke it or remove the membership
it acts through, so both are put back before each request.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager, suppress

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from werkzeug.serving import make_server

from tests.helpers import build_world

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
pytestmark = pytest.mark.timeout(900)


@contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def sqlite_instance(db_url, instance):
    if not db_url.startswith("sqlite"):
        pytest.skip("one database is enough for the fuzz run's budget")
    return instance


def test_fuzz_every_operation_no_5xx_and_schema_conformant(sqlite_instance, app):
    from appliance.web.models.tenancy import ApiToken, Membership

    with app.app_context():
        world = build_world()
    token_row = ApiToken.get(ApiToken.tenant == world.tenants["P"].id, ApiToken.role == "admin")
    member = world.members[("P", "admin")]
    headers = world.headers("P", "admin")
    database = app.extensions["database"]
    database.close()  # the server's requests open their own connection

    def restore():
        with database.connection_context():
            ApiToken.update(revoked=False).where(ApiToken.id == token_row.id).execute()
            if Membership.get_or_none(Membership.id == member.id) is None:
                Membership.create(id=member.id, user=member.user_id, tenant=member.tenant_id, role="admin")
            else:
                Membership.update(role="admin").where(Membership.id == member.id).execute()

    counts = {"requests": 0, "operations": 0}
    failures = []
    with serving(app) as base:
        schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
        for result in schema.get_all_operations():
            counts["operations"] += 1
            failure = _fuzz(result.ok(), base, headers, restore, counts)
            if failure:
                failures.append(failure)
    database.connect(reuse_if_open=True)
    print(f"fuzz: {counts['requests']} requests over {counts['operations']} operations")
    assert counts["operations"] >= 40
    assert counts["requests"] >= counts["operations"] * min(EXAMPLES, 10)
    assert not failures, "\n".join(failures[:20])


def _fuzz(operation, base, headers, restore, counts) -> str | None:
    """Run one operation's examples; the first failure's text, or None."""
    failed = []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case):
        restore()
        counts["requests"] += 1
        try:
            case.call_and_validate(base_url=f"{base}/api/v1", headers=headers,
                                   checks=[not_a_server_error, response_schema_conformance])
        except Exception as exc:
            failed.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:300]}")
            raise

    with suppress(Exception):
        run()
    return failed[0] if failed else None
