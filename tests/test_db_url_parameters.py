"""libpq parameters in a PostgreSQL URL reach the connection (TLS to a remote database)."""

from __future__ import annotations

import peewee
import pytest

from appliance.web import db as dbmod


def test_sslmode_in_the_url_reaches_libpq(pg_url):
    # The test server has no TLS: "disable" connects, "require" must be refused by libpq.
    plain = dbmod.open_database(pg_url + "?sslmode=disable&application_name=url-test")
    plain.connect()
    try:
        assert plain.execute_sql("select current_setting('application_name')").fetchone()[0] == "url-test"
    finally:
        plain.close()
    forced = dbmod.open_database(pg_url + "?sslmode=require")
    with pytest.raises(peewee.OperationalError, match=r"(?i)ssl"):
        forced.connect()


def test_unknown_url_parameter_is_refused():
    with pytest.raises(dbmod.DatabaseURLError, match="sslmdoe"):
        dbmod.open_database("postgresql://u:p@db.example:5432/appliance?sslmdoe=verify-full")
