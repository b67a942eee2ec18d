"""Installed licences, the clock high-water mark, and the programs assigned to tenants."""

from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from appliance.web.models.base import BaseModel, utcnow
from appliance.web.models.tenancy import Tenant, User


class InstalledLicence(BaseModel):
    """Every licence ever installed (the history); which one is in effect is computed.

    The armoured text is kept verbatim and verified again whenever it is loaded,
    so editing a row in the database cannot raise a limit; the other columns
    are copies for listing history without parsing.
    """

    fingerprint = CharField(max_length=16, unique=True)  # sha256 of the signed payload
    licence_id = CharField(max_length=64, index=True)
    key_id = CharField(max_length=64)
    customer = CharField(max_length=200)
    valid_from = DateTimeField()
    expires_at = DateTimeField()
    text = TextField()
    installed_at = DateTimeField(default=utcnow)
    installed_by = ForeignKeyField(User, null=True, on_delete="SET NULL")


class LicenceClock(BaseModel):
    """One row: when the evaluation started and the latest time this appliance has seen.

    ``high_water`` is MAC'd (appliance.core.licence.state.ClockGuard) with a key derived
    from the installation's private key, so a row set back by hand is detected, not believed.
    """

    id = IntegerField(primary_key=True)  # always 1
    installation_id = CharField(max_length=64)
    evaluation_started_at = DateTimeField(default=utcnow)
    evaluation_mac = CharField(max_length=64, null=True)  # HMAC, key outside the database
    high_water = CharField(max_length=20, null=True)
    high_water_mac = CharField(max_length=64, null=True)


class TenantProgram(BaseModel):
    """A program (web chat, e-mail, API, ...) the provider assigned to a tenant.

    A future ``effective_from`` is a future-dated change: the program applies
    itself on that date with no job needed, since every check compares dates.
    Sub-accounts inherit the programs of their account.
    """

    tenant = ForeignKeyField(Tenant, backref="programs", on_delete="CASCADE")
    program = CharField(max_length=32)
    assigned_at = DateTimeField(default=utcnow)
    effective_from = DateTimeField(default=utcnow)
    assigned_by = ForeignKeyField(User, null=True, on_delete="SET NULL")

    class Meta:
        indexes = ((("tenant", "program"), True),)

    def to_json(self) -> dict:
        return {
            "tenant_id": self.tenant_id,
            "program": self.program,
            "assigned_at": self.assigned_at.isoformat() + "Z",
            "effective_from": self.effective_from.isoformat() + "Z",
        }
