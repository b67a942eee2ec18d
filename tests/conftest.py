"""Shared fixtures: an instance per test on SQLite and on a real PostgreSQL server,
the app and its client, and a seeded tenant tree with users and tokens of each role."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from appliance.core.config import Instance
from appliance.web import provisioning as setup
from tests.pg import TempPostgres

PASSWORD = "correct-horse-battery"
ROLES = ("admin", "supervisor", "agent")


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: builds Debian hosts and runs Ansible against them (slow)")
    config.addinivalue_line("markers", "browser: drives headless Chromium")


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


def make_instance(home, database_url: str) -> Instance:
    home.mkdir(parents=True, exist_ok=True)
    setup.ensure_config(home, {"database_url": database_url})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    return instance


@pytest.fixture
def instance(tmp_path, db_url):
    return make_instance(tmp_path / "home", db_url)


@contextmanager
def running_app(instance):
    """The app for ``instance`` with its database connection open for the test's own queries."""
    from appliance.web import create_app

    app = create_app(instance=instance)
    app.config["TESTING"] = True
    database = app.extensions["database"]
    database.connect(reuse_if_open=True)
    try:
        yield app
    finally:
        if not database.is_closed():
            database.close()


def trust_test_signer(signer, directory, monkeypatch) -> None:
    """Make the appliance trust ``signer``'s key (a non-production trust root)."""
    from appliance.core.licence.trust import TRUST_ROOT_ENV

    signer.write_public(directory)
    monkeypatch.setenv(TRUST_ROOT_ENV, str(directory))


@pytest.fixture
def app(instance):
    with running_app(instance) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, path="/login") -> str:
    page = client.get(path)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email, password=PASSWORD):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


@dataclass
class World:
    """Tenants P > A > (A1, A2); P > B > B1; a user and an API token per tenant and role;
    one object of each kind per tenant."""

    tenants: dict = field(default_factory=dict)  # key -> Tenant
    users: dict = field(default_factory=dict)  # (key, role) -> User
    members: dict = field(default_factory=dict)  # (key, role) -> Membership
    tokens: dict = field(default_factory=dict)  # (key, role) -> token string
    objects: dict = field(default_factory=dict)  # key -> {kind: object}

    def email(self, key, role):
        return self.users[(key, role)].email

    def headers(self, key, role):
        return {"Authorization": f"Bearer {self.tokens[(key, role)]}"}


TREE = {"P": None, "A": "P", "A1": "A", "A2": "A", "B": "P", "B1": "B"}


def build_world() -> World:
    """Needs a bound, migrated database (inside an app fixture)."""
    from appliance.web.models.contact_center import Article, CannedAnswer, Channel, Team
    from appliance.web.models.tenancy import ApiToken, Membership, User
    from appliance.web.services import contacts, conversations, tenants
    from appliance.web.services.passwords import hash_password
    from appliance.web.services.tokens import new_token

    world = World()
    digest = hash_password(PASSWORD)  # once: argon2 is deliberately slow
    for key, parent in TREE.items():
        if parent is None:
            tenant = tenants.create_provider("Provider P")
        else:
            kind = "customer" if world.tenants[parent].level == 1 else "brand"
            tenant = tenants.create_child(world.tenants[parent], f"Tenant {key}", kind)
        world.tenants[key] = tenant
        for role in ROLES:
            user = User.create(email=f"{role}@{key.lower()}.test", name=f"{role} {key}", password_hash=digest)
            world.users[(key, role)] = user
            world.members[(key, role)] = Membership.create(user=user, tenant=tenant, role=role)
            token, prefix, token_hash = new_token()
            ApiToken.create(tenant=tenant, created_by=user, name=f"{role} token", role=role,
                            prefix=prefix, token_hash=token_hash)
            world.tokens[(key, role)] = token
        channel = Channel.create(tenant=tenant, kind="webchat", name=f"chat {key}")
        shared_channel = Channel.create(tenant=tenant, kind="webhook", name=f"shared {key}", shared=True)
        contact = contacts.create_contact(tenant, name=f"Contact {key}", email=f"c@{key.lower()}.example",
                                          phone="+49 30 1234567")
        conv = conversations.start_conversation(channel, tenant, contact, f"hello from {key}")
        message = conv.messages.get()
        world.objects[key] = {
            "channel": channel,
            "shared_channel": shared_channel,
            "contact": contact,
            "conversation": conv,
            "message": message,
            "canned": CannedAnswer.create(tenant=tenant, shortcut="hi", title="Hi", body="Hi there"),
            "article": Article.create(tenant=tenant, title=f"private {key}", body="x"),
            "shared_article": Article.create(tenant=tenant, title=f"shared {key}", body="y", shared=True),
            "team": Team.create(tenant=tenant, name=f"team {key}"),
            "member": world.members[(key, "agent")],
            "token": ApiToken.get(ApiToken.tenant == tenant.id, ApiToken.role == "agent"),
        }
    return world


@pytest.fixture
def world(app):
    with app.app_context():
        return build_world()


@pytest.fixture
def app_context(app):
    with app.app_context() as ctx:
        yield ctx
