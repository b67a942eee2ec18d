"""Creating an instance: config, key files, schema, the first provider admin."""

from __future__ import annotations

import secrets
from pathlib import Path

from appliance.core.config import CONFIG_FILE, DEFAULTS, Instance, write_config, write_secret_file
from appliance.core.identity import ensure_identity
from appliance.web import db as dbmod
from appliance.web.crypto import ensure_master_key, open_keyring
from appliance.web.migrations import upgrade
from appliance.web.models.tenancy import PROVIDER, Membership, Tenant, User
from appliance.web.services import tenants


def ensure_config(home: Path, settings: dict | None = None) -> bool:
    """Write config.yml unless one exists (Ansible may have templated it already)."""
    if (home / CONFIG_FILE).exists():
        return False
    base = {k: v for k, v in DEFAULTS.items() if k in ("database_url", "profile")}
    base.update(settings or {})
    write_config(home, base)
    return True


def ensure_session_key(instance: Instance) -> bool:
    return write_secret_file(instance.path(instance["secret_key_file"]), secrets.token_hex(32).encode())


def ensure_keys(instance: Instance) -> list[str]:
    """Create every missing key file; existing ones are never touched."""
    created = []
    if ensure_session_key(instance):
        created.append("session key")
    if ensure_master_key(instance):
        created.append("master key")
    if ensure_identity(instance):
        created.append("installation identity")
    return created


def migrate(instance: Instance, progress=None, create: bool = True) -> list[str]:
    """Apply pending migrations; ``create`` (init's) lets a missing SQLite database be made."""
    from appliance.web.startup import check_database

    database = dbmod.bind(instance.database_url)
    check_database(instance, database, may_create=create)
    keyring = check_master_key(instance)  # a wrong key must stop us before any schema change
    with database.connection_context():
        return upgrade(database, progress=progress, keyring=keyring)


def check_master_key(instance: Instance):
    """The key ring (not installed process-wide), or the crypto module's clear error when
    the master key is missing or wrong."""
    return open_keyring(instance, install=False)


def ensure_provider_admin(instance: Instance, email: str, password: str, provider_name: str,
                          must_change_password: bool = False) -> bool:
    """Create the provider tenant and its first admin when the database has no user yet.

    ``must_change_password``: the password was chosen for them (by the installer), so the
    UI offers the admin nothing but the password change until they pick their own."""
    from appliance.web.models.audit import bind_trail

    database = dbmod.bind(instance.database_url)
    bind_trail(instance)  # whatever the services record is chained with the installation's key
    with database.connection_context(), database.atomic():
        if User.select().exists():
            return False
        provider = Tenant.get_or_none(Tenant.level == PROVIDER) or tenants.create_provider(provider_name)
        user = tenants.create_user(email, "Provider admin", password)
        if must_change_password:
            User.update(must_change_password=True).where(User.id == user.id).execute()
        Membership.create(user=user, tenant=provider, role="admin")
    return True
