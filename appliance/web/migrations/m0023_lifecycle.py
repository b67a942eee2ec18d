"""Account lifecycle and the shared catalogue: one-time password-reset links; when a tenant
was deactivated; whether a tenant set its own branding (else it inherits its parent's);
canned answers shared down; article categories.

Frozen: these classes and columns are the tables as this step made them (see the package
docstring). Tenants that already changed their colour or logo, and the provider, keep
their own branding; the others inherit from now on (they showed the default before).
"""

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, PostgresqlDatabase

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import User


class PasswordReset(FrozenModel):
    id = AutoField()
    user = ForeignKeyField(User, on_delete="CASCADE", backref="+")
    token_hash = CharField(max_length=64, unique=True)
    created_by = IntegerField(null=True)
    created_at = DateTimeField()
    expires_at = DateTimeField()
    used_at = DateTimeField(null=True)

    class Meta:
        table_name = "password_reset"


MODELS = [PasswordReset]

COLUMNS = [
    ("tenant", "deactivated_at", "DATETIME", "TIMESTAMP"),
    ("tenant", "deactivated_with", "INTEGER", "INTEGER"),
    ("tenant", "own_branding", "INTEGER NOT NULL DEFAULT FALSE", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("canned_answer", "shared", "INTEGER NOT NULL DEFAULT FALSE", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ("article", "category", "VARCHAR(60) NOT NULL DEFAULT ''", "VARCHAR(60) NOT NULL DEFAULT ''"),
]


def up(db, migrator):
    postgres = isinstance(getattr(db, "obj", db), PostgresqlDatabase)
    create_frozen(db, MODELS)
    added = []
    for table, column, sqlite_type, postgres_type in COLUMNS:
        if column in {c.name for c in db.get_columns(table)}:
            continue
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {postgres_type if postgres else sqlite_type}')
        added.append(column)
    if "own_branding" in added:
        db.execute_sql("""UPDATE "tenant" SET "own_branding" = TRUE
                          WHERE "level" = 1 OR "logo" IS NOT NULL OR "brand_color" <> '#1f6feb'""")
