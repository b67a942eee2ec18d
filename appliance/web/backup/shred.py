"""Crypto-shredding that reaches the backups: a ledger of shredded tenants outside the database.

A tenant's data is readable only through its data keys, stored wrapped in
``crypto_tenant_key``. Deleting those rows shreds the live data. Archives taken
earlier still hold the wrapped rows, so the shredded tenant ids are also written to
``HOME/keys/shredded-tenants.json`` (kept with the key files, never in a backup),
carried in every later archive's manifest, and applied by every restore: an old
archive restored on this instance, or on a new one holding any later archive's
ledger, comes back with that tenant's keys deleted before anything can read them.
"""

from __future__ import annotations

import json

from appliance.core.config import write_secret_file

LEDGER = "keys/shredded-tenants.json"


def ledger(instance) -> set[int]:
    path = instance.home / LEDGER
    if not path.exists():
        return set()
    return {int(t) for t in json.loads(path.read_text()).get("tenants", [])}


def record(instance, tenant_ids) -> None:
    merged = ledger(instance) | {int(t) for t in tenant_ids}
    write_secret_file(instance.home / LEDGER,
                      (json.dumps({"tenants": sorted(merged)}) + "\n").encode(), overwrite=True)


def shred_tenant(instance, tenant_id: int) -> int:
    """Delete the tenant's keys in the bound database and record it in the ledger (first)."""
    from appliance.web.crypto.keyring import shred_tenant_keys
    from appliance.web.db import database_proxy

    record(instance, [tenant_id])  # before the delete: a crash in between still shreds on restore
    with database_proxy.atomic():
        return shred_tenant_keys(tenant_id)


def apply(tenant_ids) -> int:
    """Delete the key rows of every ledger tenant in the bound (just restored) database."""
    from appliance.web.crypto.tables import TenantKey

    if not tenant_ids:
        return 0
    return TenantKey.delete().where(TenantKey.tenant_id.in_(sorted(tenant_ids))).execute()
