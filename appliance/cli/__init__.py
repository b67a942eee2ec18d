"""The ``appliance`` command: one click group; each feature's commands come from their own module."""

from __future__ import annotations

import os

import click

from appliance.cli import audit, backup, bundle, instance, keys, licence, sizing, support, sync
from appliance.cli.context import Context
from appliance.core.config import ConfigError
from appliance.vendor_tools.cli import vendor


class ApplianceGroup(click.Group):
    """The root group: a configuration or database that cannot be used is one message, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=ApplianceGroup)
@click.option(
    "--home",
    envvar="APPLIANCE_HOME",
    type=click.Path(file_okay=False),
    help="Instance directory (config, keys, SQLite database). Env: APPLIANCE_HOME.",
)
@click.version_option(package_name="contact-appliance")
@click.pass_context
def main(ctx, home):
    """Run and operate the contact-center appliance."""
    # Files we create (SQLite database, logs, exports) are for the service user only.
    os.umask(0o077)
    ctx.obj = Context(home)


for _command in [
    *instance.COMMANDS,
    keys.keys,
    audit.audit,
    licence.licence,
    sync.sync,
    sizing.sizing,
    bundle.bundle_command,
    backup.backup,
    support.support_bundle,
    vendor,
]:
    main.add_command(_command)
