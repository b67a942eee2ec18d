"""Finding an inbound sender: channel identities indexed by channel and blind index together.

Frozen: the index is the schema as this step made it (see the package docstring).

Every inbound message looks its sender up by (channel, tenant, blind index). With only
single-column indexes SQLite, which keeps no statistics here, walked the tenant's index,
i.e. every identity the tenant has, once per message; the pair is one index probe.
"""

INDEXES = {
    "channel_identity_channel_id_external_bidx": ("channel_identity", ("channel_id", "external_bidx")),
}


def up(db, migrator):
    for name, (table, columns) in INDEXES.items():
        listed = ", ".join(f'"{c}"' for c in columns)
        db.execute_sql(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({listed})')
