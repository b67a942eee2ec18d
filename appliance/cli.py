"""The ``appliance`` command: one click group, feature groups attached at the bottom."""

from __future__ import annotations

import os

import click

from appliance.config import ConfigError, Instance


class Context:
    """What every subcommand gets: the instance directory, loaded on first use."""

    def __init__(self, home):
        self.home_arg = home
        self._instance = None

    def instance(self, require_config=True) -> Instance:
        if self._instance is None:
            try:
                self._instance = Instance.load(self.home_arg, require_config=require_config)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._instance


pass_ctx = click.make_pass_decorator(Context)


@click.group()
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


from appliance.vendor_cli import vendor  # noqa: E402  (feature group, attached last)

main.add_command(vendor)


# --- command groups from their own modules (one line each) ---------------------------
from appliance.core_cli import CORE_COMMANDS  # noqa: E402

for _command in CORE_COMMANDS:
    main.add_command(_command)

from appliance.bundle import bundle_command  # noqa: E402  (issue 5: offline bundle)
from appliance.sizing import sizing_group  # noqa: E402  (issue 5: sizing calculator)

main.add_command(sizing_group)
main.add_command(bundle_command)

from appliance.vendor_sync.cli import register as _register_vendor_sync  # noqa: E402  (issue 6)

_register_vendor_sync(vendor)

from appliance.sync.cli import sync as _sync_group  # noqa: E402  (issue 6: sync to the vendor)

main.add_command(_sync_group)

from appliance.keys_cli import group as _keys_group  # noqa: E402  (issue 3: encryption keys)

main.add_command(_keys_group)

from appliance.licence_cli import licence as _licence_group  # noqa: E402  (issue 4: licence)

main.add_command(_licence_group)

