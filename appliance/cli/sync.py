"""``appliance sync ...``: see, export and (when on) send the usage reports for the vendor."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from appliance.cli.context import open_database, pass_ctx
from appliance.core import clock
from appliance.core.config import write_secret_file


def _date(value: str | None, default: dt.date) -> dt.date:
    if not value:
        return default
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


def _yesterday() -> dt.date:
    return clock.now().date() - dt.timedelta(days=1)


@click.group("sync")
def sync():
    """Usage reports for the vendor (off unless an admin turns it on)."""


@sync.command()
@click.option("--public-key-out", type=click.Path(dir_okay=False), help="Also write the public key (PEM) here.")
@pass_ctx
def identity(ctx, public_key_out):
    """Print this installation's id and public key (give both to the vendor to register)."""
    from appliance.core.identity import IdentityError, load_identity

    try:
        ident = load_identity(ctx.instance())
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"installation id: {ident.installation_id}")
    click.echo(f"fingerprint:     {ident.fingerprint()}")
    click.echo(ident.public_key_pem().rstrip())
    if public_key_out:
        Path(public_key_out).write_text(ident.public_key_pem())


@sync.command()
@pass_ctx
def preview(ctx):
    """Print exactly what the next request to the vendor would carry."""
    from appliance.web.sync import service

    instance = ctx.instance()
    with open_database(instance):
        click.echo(service.preview(instance))


@sync.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--day", help="One day (YYYY-MM-DD); default yesterday (UTC).")
@click.option("--from", "first", help="First day of a range.")
@click.option("--to", "last", help="Last day of a range (default: --from).")
@click.option("--armor", is_flag=True, help="ASCII-armoured instead of readable JSON.")
@click.option("--force", is_flag=True, help="Overwrite FILE.")
@pass_ctx
def export(ctx, file, day, first, last, armor, force):
    """Write the signed report to FILE, for a site with no network path to the vendor."""
    from appliance.web.sync import service

    if day and (first or last):
        raise click.UsageError("use --day or --from/--to, not both")
    start = _date(day or first, _yesterday())
    end = _date(last, start)
    if end < start:
        raise click.UsageError("--to is before --from")
    instance = ctx.instance()
    with open_database(instance):
        text = service.export(instance, start, end, armor=armor)
    path = Path(file)
    if not write_secret_file(path, text.encode("ascii"), overwrite=force):
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    click.echo(f"wrote the signed report for {start}..{end} to {path}")


@sync.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx, as_json):
    """Whether sync is on, what is queued, when it last sent, what the vendor announced."""
    from appliance.web.sync import service

    instance = ctx.instance()
    with open_database(instance):
        info = service.status(instance)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    state = "on" if info["enabled"] else (
        "off (turned off by the installer)" if info["locked_off"] else "off"
    )
    click.echo(f"sync: {state}")
    click.echo(f"vendor url: {info['vendor_url'] or 'not set'}")
    if info["config_problem"] and info["enabled"]:
        click.echo(f"cannot send: {info['config_problem']}")
    click.echo(f"installation: {info['installation_id']} ({info['public_key_fingerprint']})")
    click.echo("outbox: " + ", ".join(f"{k} {v}" for k, v in info["outbox"].items()))
    click.echo(f"last sent: {info['last_sent_at'] or 'never'}")
    click.echo(f"requests today: {info['requests_today']} of {info['max_requests_per_day']}")
    if info["last_error"]:
        click.echo(f"last error: {info['last_error']}")
    click.echo(f"latest version announced: {info['latest_version'] or 'unknown'} (running {info['running_version']})")
    if info["licence_note"]:
        click.echo(f"licence: {info['licence_note']}")


@sync.command("run-once")
@pass_ctx
def run_once(ctx):
    """Queue finished days and send what is due, now (what the worker does each round)."""
    from appliance.core.sync.client import SyncConfigError
    from appliance.web.sync import service

    instance = ctx.instance()
    with open_database(instance):
        try:
            result = service.run_once(instance)
        except SyncConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result.to_json(), indent=2))
    if result.status == "error":
        raise SystemExit(1)
    if result.status == "retry":
        raise SystemExit(2)


def _switch(ctx, enabled: bool):
    from appliance.web.sync import service

    instance = ctx.instance()
    with open_database(instance):
        try:
            changed = service.set_enabled(instance, enabled, via="cli")
        except service.SyncLockedOff as exc:
            raise click.ClickException(str(exc)) from exc
    word = "on" if enabled else "off"
    click.echo(f"sync turned {word}" if changed else f"sync was already {word}")


@sync.command()
@pass_ctx
def enable(ctx):
    """Turn sync on (recorded in the audit trail)."""
    _switch(ctx, True)


@sync.command()
@pass_ctx
def disable(ctx):
    """Turn sync off (recorded in the audit trail)."""
    _switch(ctx, False)
