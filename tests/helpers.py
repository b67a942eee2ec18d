"""What the tests share besides fixtures: building an instance and its app, logging in,
the seeded tenant tree, a licence signer the app trusts, and the fake clock.

Test modules import from here; tests/conftest.py holds only the fixtures built on it.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from appliance.core.config import Instance
from appliance.web import provisioning as setup

PASSWORD = "correct-horse-battery"
ROLES = ("admin", "supervisor", "agent")

# -- time -----------------------------------------------------------------------------

# Where every test's clock starts: a fixed, unremarkable instant (mid-morning UTC on an
# ordinary weekday in the middle of a month), far from midnight, a month end and a
# year end, so a test moving its clock by hours or days never crosses one by accident.
START = dt.datetime(2030, 4, 17, 9, 30, tzinfo=dt.UTC)


class FakeClock:
    """A test's own time: it stands still until the test moves it.

    The ``clock`` fixture installs one as ``appliance.core.clock.now``, so every read
    of the time the appliance makes (licence state and its high-water mark, row
    timestamps, sync days and retries) sees this clock and never the wall clock.
    """

    def __init__(self, start: dt.datetime = START):
        self.current = _aware(start)

    def __call__(self) -> dt.datetime:
        """Aware UTC, like ``appliance.core.clock.now``."""
        return self.current

    def naive(self) -> dt.datetime:
        """Naive UTC, as the database stores it (and the sync client's clock returns)."""
        return self.current.replace(tzinfo=None)

    def set(self, when: dt.datetime) -> dt.datetime:
        self.current = _aware(when)
        return self.current

    def advance(self, **delta) -> dt.datetime:
        """Move forward by ``timedelta(**delta)``."""
        self.current += dt.timedelta(**delta)
        return self.current


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# -- instances and apps -------------------------------------------------------------------


def make_instance(home, database_url: str) -> Instance:
    home.mkdir(parents=True, exist_ok=True)
    setup.ensure_config(home, {"database_url": database_url})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    return instance


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


@contextmanager
def served_over_loopback(app, threads=4):
    """``app`` under waitress on 127.0.0.1; yields its base URL.

    On the way out, every live-update stream of ``app`` is waited for before the server
    goes: a stream left running would keep querying through the models' shared database
    proxy, which the next test points at its own, new database.
    """
    import threading

    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=threads, ident="appliance-test")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        _hold_stream_slots(app)
        server.close()
        server.task_dispatcher.shutdown(timeout=5)
        for channel in list(server._map.values()):
            channel.close()
        thread.join(timeout=5)


def _hold_stream_slots(app) -> None:
    """Take every stream slot of ``app`` (and keep them): running streams have ended then."""
    slots = app.extensions.get("live_stream_slots")
    if slots is None:
        return
    settings = app.extensions["appliance_instance"].settings
    budget = float(settings["live_stream_seconds"]) + 10
    for _ in range(int(settings["live_streams_per_process"])):
        if not slots.acquire(timeout=budget):
            raise AssertionError(f"a live-update stream still ran {budget:.0f} s after its test")


def trust_test_signer(signer, directory, monkeypatch) -> None:
    """Make the appliance trust ``signer``'s key (a non-production trust root)."""
    from appliance.core.licence.trust import TRUST_ROOT_ENV

    signer.write_public(directory)
    monkeypatch.setenv(TRUST_ROOT_ENV, str(directory))


@contextmanager
def raw_database(request, instance):
    """Yields ``read() -> bytes``: the database as it lies on disk (SQLite: the file and its
    -wal, kept by an idle connection held open as on a live server) or as a PostgreSQL dump,
    for scans that plaintext is not there."""
    import sqlite3
    from urllib.parse import urlparse

    holder = None
    if instance.database_url.startswith("sqlite"):
        holder = sqlite3.connect(instance.home / "appliance.db")
        holder.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def read() -> bytes:
        if holder is not None:
            path = instance.home / "appliance.db"
            return b"".join(p.read_bytes() for p in (path, path.with_name("appliance.db-wal")) if p.exists())
        blob = request.getfixturevalue("pg_server").dump(urlparse(instance.database_url).path.lstrip("/"))
        assert b"PostgreSQL database dump" in blob
        return blob

    try:
        yield read
    finally:
        if holder is not None:
            holder.close()


# -- logging in -----------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client, path="/login") -> str:
    page = client.get(path)
    match = CSRF_RE.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client, email, password=PASSWORD):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


# -- the seeded tenant tree -----------------------------------------------------------------


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

# Which world object a URL argument names.
ARG_OBJECT = {
    "conversation_id": "conversation",
    "contact_id": "contact",
    "channel_id": "channel",
    "article_id": "article",
    "canned_id": "canned",
    "member_id": "member",
    "token_id": "token",
    "team_id": "team",
    "message_id": "message",
    "attachment_id": "attachment",
    "label_id": "label",
}


def rule_url(rule, world, target_key, shared_kind=None, viewer_key=None):
    """The URL rule's path for target_key's objects. Reading a parent's shared object from
    the UI happens inside the viewer's own tenant: /t/<viewer>/kb/<parent's article>."""
    values = {}
    for arg in rule.arguments:
        if arg == "tenant_id":
            values[arg] = world.tenants[viewer_key if shared_kind and viewer_key else target_key].id
        else:
            kind = ARG_OBJECT[arg]
            if shared_kind and ARG_OBJECT[arg] in shared_kind:
                kind = shared_kind
            values[arg] = world.objects[target_key][kind].id
    path = rule.rule
    for arg, value in values.items():
        path = path.replace(f"<id:{arg}>", str(value)).replace(f"<int:{arg}>", str(value))
    return path


def build_world() -> World:
    """Needs a bound, migrated database (inside an app fixture)."""
    from appliance.web.models.contact_center import Article, Attachment, CannedAnswer, Channel, Label, Team
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
        attachment = Attachment.create(message=message, tenant=tenant, filename=f"note {key}.txt",
                                       content_type="text/plain", size=5, data=b"hello")
        world.objects[key] = {
            "channel": channel,
            "shared_channel": shared_channel,
            "contact": contact,
            "conversation": conv,
            "message": message,
            "attachment": attachment,
            "canned": CannedAnswer.create(tenant=tenant, shortcut="hi", title="Hi", body="Hi there"),
            "article": Article.create(tenant=tenant, title=f"private {key}", body="x"),
            "shared_article": Article.create(tenant=tenant, title=f"shared {key}", body="y", shared=True),
            "team": Team.create(tenant=tenant, name=f"team {key}"),
            "member": world.members[(key, "agent")],
            "token": ApiToken.get(ApiToken.tenant == tenant.id, ApiToken.role == "agent"),
            "label": Label.create(tenant=tenant, name=f"label {key}"),
            "shared_label": Label.create(tenant=tenant, name=f"shared label {key}", shared=True),
        }
    return world


# -- processes ------------------------------------------------------------------------------


def stop_process_group(proc) -> str:
    """SIGTERM a process started with ``start_new_session=True`` (and its children); its output.

    SIGKILL after 20 s: a process that ignores SIGTERM must not outlive its test.
    """
    import os
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)[0] or ""
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0] or ""
