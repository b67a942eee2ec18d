"""Licences (issue 4): installed licences, the clock high-water mark, program assignments."""

from webapp.models.licensing import InstalledLicence, LicenceClock, TenantProgram


def up(db, migrator):
    db.create_tables([InstalledLicence, LicenceClock, TenantProgram], safe=True)
