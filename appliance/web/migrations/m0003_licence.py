"""Licences: installed licences, the clock high-water mark, program assignments.

The clock row is created here so the evaluation period counts from installation
(or from the upgrade that brought licences), not from the first page view.

Frozen: these classes are the tables as this step created them (see the package docstring).
"""

import uuid

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from appliance.web.migrations import FrozenModel, create_frozen
from appliance.web.migrations.m0001_core import Tenant, User
from appliance.web.models.base import utcnow


class InstalledLicence(FrozenModel):
    id = AutoField()
    fingerprint = CharField(max_length=16, unique=True)
    licence_id = CharField(max_length=64, index=True)
    key_id = CharField(max_length=64)
    customer = CharField(max_length=200)
    valid_from = DateTimeField()
    expires_at = DateTimeField()
    text = TextField()
    installed_at = DateTimeField()
    installed_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "installed_licence"


class LicenceClock(FrozenModel):
    id = IntegerField(primary_key=True)
    installation_id = CharField(max_length=64)
    evaluation_started_at = DateTimeField()
    high_water = CharField(max_length=20, null=True)
    high_water_mac = CharField(max_length=64, null=True)

    class Meta:
        table_name = "licence_clock"


class TenantProgram(FrozenModel):
    id = AutoField()
    tenant = ForeignKeyField(Tenant, on_delete="CASCADE", backref="+")
    program = CharField(max_length=32)
    assigned_at = DateTimeField()
    effective_from = DateTimeField()
    assigned_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")

    class Meta:
        table_name = "tenant_program"
        indexes = ((("tenant", "program"), True),)


MODELS = [InstalledLicence, LicenceClock, TenantProgram]


def up(db, migrator):
    create_frozen(db, MODELS)
    with db.bind_ctx([LicenceClock]):
        if not LicenceClock.select().where(LicenceClock.id == 1).exists():
            LicenceClock.insert(id=1, installation_id=str(uuid.uuid4()), evaluation_started_at=utcnow()).execute()
