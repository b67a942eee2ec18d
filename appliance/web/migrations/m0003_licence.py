"""Licences: installed licences, the clock high-water mark, program assignments.

The clock row is created here so the evaluation period counts from installation
(or from the upgrade that brought licences), not from the first page view.
"""

import uuid

from appliance.web.models.base import utcnow
from appliance.web.models.licence import InstalledLicence, LicenceClock, TenantProgram


def up(db, migrator):
    db.create_tables([InstalledLicence, LicenceClock, TenantProgram], safe=True)
    if not LicenceClock.select().where(LicenceClock.id == 1).exists():
        # Explicit columns: a later migration may add fields this one must not write.
        LicenceClock.insert(id=1, installation_id=str(uuid.uuid4()), evaluation_started_at=utcnow()).execute()
