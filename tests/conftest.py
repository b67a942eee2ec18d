"""Shared fixtures: the test's own clock, an instance per test on SQLite and on a real
PostgreSQL server, the app and its client, a seeded tenant tree with users and tokens of
each role, and a CLI runner. Helpers they are built from live in tests/helpers.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tests.helpers import FakeClock, build_world, make_instance, running_app
from tests.pg import TempPostgres


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: builds Debian hosts and runs Ansible against them (slow)")
    config.addinivalue_line("markers", "browser: drives headless Chromium")


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """Every test owns its time: the appliance reads the clock only through
    ``appliance.core.clock.now``, and here that is a clock standing at
    ``tests.helpers.START`` until the test moves it (``clock.set``, ``clock.advance``).
    So no result depends on the hour, the date or how long the suite has run."""
    fake = FakeClock()
    monkeypatch.setattr("appliance.core.clock.now", fake)
    return fake


@pytest.fixture
def runner():
    """Runs ``appliance`` commands in this process, where the fake clock holds."""
    return CliRunner()


@pytest.fixture(scope="session")
def pg_server():
    server = TempPostgres().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///appliance.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def instance(tmp_path, db_url):
    return make_instance(tmp_path / "home", db_url)


@pytest.fixture
def app(instance):
    with running_app(instance) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def world(app):
    with app.app_context():
        return build_world()


@pytest.fixture
def app_context(app):
    with app.app_context() as ctx:
        yield ctx
