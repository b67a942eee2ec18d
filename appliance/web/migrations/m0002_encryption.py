"""Encryption at rest: the wrapped-key tables and the blind-index columns.

The encrypted columns themselves are created by m0001 from the model
definitions (BLOB/bytea). Blind-index and uid columns are added here when a
database was created before they existed. No key material is needed: the
first start after this migration records the master key id (see
appliance.web.crypto.keyring.KeyRing.verify_master).
"""

from appliance.web.crypto.fields import BlindIndexField, registered_models
from appliance.web.crypto.tables import CRYPTO_MODELS


def up(db, migrator):
    import appliance.web.models  # noqa: F401  (registers the encrypted core models)
    from appliance.web.migrations import ensure_column

    db.create_tables(CRYPTO_MODELS, safe=True)
    existing = set(db.get_tables())
    for model in registered_models():
        if model._meta.table_name not in existing:
            continue
        for field in model._meta.sorted_fields:
            if isinstance(field, BlindIndexField) and ensure_column(db, migrator, model, field.name):
                db.execute_sql(
                    f'CREATE INDEX IF NOT EXISTS "{model._meta.table_name}_{field.column_name}" '
                    f'ON "{model._meta.table_name}" ("{field.column_name}")'
                )
