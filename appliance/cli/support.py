"""``appliance support-bundle``: a redacted diagnostics archive for the vendor's support."""

from __future__ import annotations

from pathlib import Path

import click

from appliance.cli.context import pass_ctx


@click.command("support-bundle")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the bundle (.tar.gz) here; default: support-bundle-<time>.tar.gz in the current directory.")
@click.option("--preview", is_flag=True, help="List what would be included; write nothing.")
@pass_ctx
def support_bundle(ctx, out, preview):
    """Versions, redacted config, status, schema, key ids and scrubbed recent logs in one file."""
    from appliance.core import clock
    from appliance.core.redact import scrub_text
    from appliance.web import db as dbmod
    from appliance.web import support_bundle as bundle

    instance = ctx.instance()
    if preview:
        for name, what in bundle.preview(instance):
            click.echo(f"{name:32} {what}")
        return
    out = out or Path(f"support-bundle-{clock.now():%Y%m%dT%H%M%SZ}.tar.gz")
    if out.exists():
        raise click.ClickException(f"{out} exists; choose another --out.")
    database = dbmod.bind(instance.database_url)
    try:
        database.connect()
    except Exception as exc:  # a bundle is most wanted when the database is down
        click.echo(f"warning: the database is unreachable ({scrub_text(str(exc))}); "
                   "the bundle records that instead of its contents", err=True)
    try:
        names = bundle.build(instance, database, out)
    except OSError as exc:
        raise click.ClickException(f"could not write {out}: {exc}") from exc
    finally:
        if not database.is_closed():
            database.close()
    click.echo(f"support bundle written to {out} ({len(names)} entries); review it before sending "
               "(tar -tzf / tar -xzf).")
