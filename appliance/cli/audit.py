"""``appliance audit``: check the audit chain and print its anchored head (for backups)."""

from __future__ import annotations

import json

import click

from appliance.cli.context import open_database, pass_ctx


@click.group("audit")
def audit():
    """The audit trail: a keyed chain anchored outside the database."""


@audit.command()
@pass_ctx
def verify(ctx):
    """Check every entry's MAC and link, and the chain against its anchor (exit 1 if damaged)."""
    from appliance.web.models.audit import verify as verify_chain

    with open_database(ctx.instance()):
        report = verify_chain()
    if report.intact:
        click.echo(f"audit chain intact: {report.total} entries, anchored at entry {report.anchored_id}")
        return
    if report.broken:
        click.echo(f"{len(report.broken)} entries do not verify, first at id {report.broken[0]}", err=True)
    for problem in report.problems:
        click.echo(problem, err=True)
    raise SystemExit(1)


@audit.command()
@pass_ctx
def head(ctx):
    """Print the anchored head as JSON: put it in the backup manifest to compare after a restore."""
    from appliance.web.models.audit import head as anchored_head

    with open_database(ctx.instance()):
        click.echo(json.dumps(anchored_head(), sort_keys=True))
