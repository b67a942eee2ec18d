"""``appliance backup``: create, list, verify, restore and prune encrypted archives (docs/BACKUP.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from appliance.cli.context import pass_ctx


def _passphrase(instance):
    from appliance.web.crypto.master import ENV_PASSPHRASE, key_source

    if key_source(instance) == "passphrase" and not os.environ.get(ENV_PASSPHRASE):
        return click.prompt("Master key passphrase", hide_input=True)
    return None


def _fail(exc):
    raise click.ClickException(str(exc)) from exc


def _errors():
    from appliance.core.config import ConfigError
    from appliance.web.backup import BackupError

    return (BackupError, ConfigError, OSError)


class _Bar:
    """A byte progress bar on stderr (so stdout stays a clean result for scripts)."""

    def __init__(self, label, total):
        self.cm = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)

    def __enter__(self):
        return self.cm.__enter__().update

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def _database_size(instance) -> int:
    from appliance.web.backup.dumps import kind_of, sqlite_path

    url = instance.database_url
    if kind_of(url) == "sqlite" and sqlite_path(url).exists():
        return sqlite_path(url).stat().st_size
    return 0


@click.group("backup")
def backup():
    """Encrypted backups of the database and the installation identity (never the keys)."""


@backup.command()
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the archive here instead of backup.directory.")
@pass_ctx
def create(ctx, out_dir):
    """Take a consistent backup while the appliance keeps serving; print the archive's path."""
    from appliance.web.backup import create_backup

    instance = ctx.instance()
    try:
        with _Bar("backing up", _database_size(instance)) as bar:
            path, manifest = create_backup(instance, progress=bar, passphrase=_passphrase(instance),
                                           out_dir=out_dir)
    except _errors() as exc:
        _fail(exc)
    size = sum(p.plain_bytes for p in manifest.parts)
    click.echo(f"backup written: {path} ({path.stat().st_size:,} bytes from {size:,}; schema "
               f"{manifest.schema_version}; master key {manifest.master_key_id})", err=True)
    click.echo(str(path))


@backup.command("list")
@pass_ctx
def list_cmd(ctx):
    """Archives in the backup directory, newest first, each checked against this instance's key."""
    from appliance.web.backup import list_backups

    instance = ctx.instance()
    try:
        found = list_backups(instance, passphrase=_passphrase(instance))
    except _errors() as exc:
        _fail(exc)
    if not found:
        click.echo("no backups yet: run 'appliance backup create'")
    for b in found:
        when = f"{b.created_at:%Y-%m-%d %H:%M}" if b.created_at else "?"
        state = f"schema {b.schema_version} {b.database_kind}" if b.good else f"UNUSABLE: {b.problem}"
        click.echo(f"{when}  {b.size:>14,}  {b.path.name}  {state}")


@backup.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def verify(ctx, archive):
    """Decrypt and check ARCHIVE and test-restore it into a scratch database."""
    from appliance.web.backup import verify_backup

    instance = ctx.instance()
    try:
        with _Bar("verifying", _plain_size(instance, archive)) as bar:
            result = verify_backup(instance, archive, progress=bar, passphrase=_passphrase(instance))
    except _errors() as exc:
        _fail(exc)
    click.echo(f"{archive}: good; restored into a scratch database: schema {result.schema_version}, "
               f"{result.tables} tables, {result.rows:,} rows")


def _plain_size(instance, archive) -> int:
    from appliance.web.backup.service import open_archive

    try:
        return open_archive(instance, archive).manifest.part("database").plain_bytes
    except Exception:  # the command itself reports the archive's problem properly
        return 0


@backup.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def restore(ctx, archive, yes):
    """Replace this instance's database and identity by ARCHIVE's (stop the web and worker first).

    Refuses, before changing anything, an archive made under another master key, an
    altered or truncated one, or one whose schema is newer than this software. An
    older archive is restored and then migrated.
    """
    from appliance.web.backup import restore_backup

    instance = ctx.instance()
    if not yes:
        click.confirm(f"Replace the database of {instance.home} with {archive}?", abort=True)
    try:
        with _Bar("restoring", _plain_size(instance, archive)) as bar:
            result = restore_backup(instance, archive, progress=bar, passphrase=_passphrase(instance))
    except _errors() as exc:
        _fail(exc)
    click.echo(f"restored {archive} (schema {result.schema_from})"
               + (f"; migrated: {', '.join(result.migrations_applied)}" if result.migrations_applied else "")
               + (f"; identity files restored: {', '.join(result.identity_restored)}"
                  if result.identity_restored else ""))
    click.echo("Start the services again, then run 'appliance keys verify'.")


@backup.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
@pass_ctx
def prune(ctx, dry_run):
    """Delete archives past backup.retention_days (monthly archives and the newest good one stay)."""
    from appliance.web.backup import prune_backups

    instance = ctx.instance()
    try:
        keep, delete = prune_backups(instance, dry_run=dry_run, passphrase=_passphrase(instance))
    except _errors() as exc:
        _fail(exc)
    verb = "would delete" if dry_run else "deleted"
    for b in delete:
        click.echo(f"{verb} {b.path.name}")
    click.echo(f"{len(keep)} kept, {len(delete)} {verb.split()[-1]}")
