"""``appliance licence install|show``: the licence from the operator's shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from appliance.cli.context import open_database, pass_ctx
from appliance.core.licence.format import MAX_LICENCE_BYTES, LicenceError


def _service(ctx):
    """The licence service of this instance (refused with a message when its state is unreadable)."""
    from appliance.web.services import ServiceError
    from appliance.web.services.licence import LicenceService

    try:
        return LicenceService.for_instance(ctx.instance())
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def licence():
    """Install and show the vendor-signed licence."""


@licence.command()
@click.argument("licence_file", type=click.Path(dir_okay=False, allow_dash=True))
@pass_ctx
def install(ctx, licence_file):
    """Verify and install a licence file ('-' reads standard input)."""
    if licence_file == "-":
        data = sys.stdin.buffer.read(MAX_LICENCE_BYTES + 1)
    else:
        path = Path(licence_file)
        if not path.is_file():
            raise click.ClickException(f"{path} does not exist.")
        with path.open("rb") as fh:
            data = fh.read(MAX_LICENCE_BYTES + 1)
    with open_database(ctx.instance()):
        service = _service(ctx)
        try:
            lic, created = service.install(data.decode("ascii", errors="replace"))
        except LicenceError as exc:
            raise click.ClickException(f"Licence refused: {exc}") from exc
        state = service.state()
    verb = "installed" if created else "was installed already"
    click.echo(f"Licence {lic.licence_id} for {lic.customer} {verb}.")
    if not lic.production:
        click.echo("Warning: signed by a non-production trust root (APPLIANCE_LICENCE_TRUST_ROOT).", err=True)
    click.echo(f"State: {state.title}")
    for message in state.messages:
        click.echo(f"  {message.level}: {message.text}")


@licence.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def show(ctx, as_json):
    """Show the licence state, limits, use, days left and history."""
    with open_database(ctx.instance()):
        report = _service(ctx).report()
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    lic = report["licence"]
    click.echo(f"State:          {report['title']} ({report['status']})")
    if lic:
        click.echo(f"Customer:       {lic['customer']}")
        click.echo(f"Licence:        {lic['licence_id']} (key {lic['key_id']}"
                   f"{'' if lic['production_key'] else ', NON-PRODUCTION'})")
        click.echo(f"Valid:          {lic['valid_from']} to {lic['expires_at']} (grace until {lic['grace_ends_at']})")
    else:
        click.echo(f"Evaluation:     ends {report['evaluation_ends_at']}")
    days = report["days_left"]
    click.echo(f"Days left:      {days if days is not None else 'none'}")
    click.echo(f"Installation:   {report['installation_id']}")
    limits, usage = report["limits"], report["usage"]
    click.echo(f"Tenants:        {usage['tenants']} of {limits['max_tenants']}")
    click.echo(f"Operator seats: {usage['seats']} of {limits['max_seats']}")
    click.echo(f"Programs:       {', '.join(limits['programs']) or 'none'}")
    if report["non_production_trust_root"]:
        click.echo("Trust:          a NON-PRODUCTION trust root is in use (APPLIANCE_LICENCE_TRUST_ROOT)")
    for message in report["messages"]:
        click.echo(f"{message['level']}: {message['text']}")
    if report["history"]:
        click.echo("History:")
        for h in report["history"]:
            click.echo(f"  {h['installed_at']}  {h['licence_id']}  {h['customer']}  "
                       f"{h['valid_from']} to {h['expires_at']}  {h['fingerprint']}")
