"""``appliance keys``: status, master and tenant key rotation, recovery kit, verification."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from appliance.cli.context import open_database, pass_ctx


def _open(ctx, passphrase: str | None = None):
    """Bind the database (schema up to date) and load the master key checked against it.

    Fails with the key's own message; the commands then open connections as they need them.
    """
    from appliance.web.crypto import MasterKeyError, open_keyring
    from appliance.web.crypto.master import ENV_PASSPHRASE, key_source

    instance = ctx.instance()
    if passphrase is None and key_source(instance) == "passphrase" and not os.environ.get(ENV_PASSPHRASE):
        passphrase = click.prompt("Master key passphrase", hide_input=True)
    with open_database(instance) as database:
        try:
            keyring = open_keyring(instance, passphrase=passphrase)
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from exc
    if keyring.recovery_note:
        click.echo(keyring.recovery_note, err=True)
    return instance, database, keyring


@click.group("keys")
def keys():
    """Encryption keys: inspect, rotate, back up, verify."""


@keys.command()
@pass_ctx
def status(ctx):
    """Master key id and source, each tenant's keys, rotations in progress."""
    from appliance.web.crypto.admin import key_status

    _, database, keyring = _open(ctx)
    with database.connection_context():
        info = key_status(keyring)
    click.echo(f"master key: {info['master_key_id']} from {info['master_key_source']}")
    click.echo(f"database expects master key: {info['database_master_key_id']}"
               + (f" (rotated {info['rotated_at']:%Y-%m-%d %H:%M} UTC)" if info["rotated_at"] else ""))
    if not info["tenants"]:
        click.echo("no tenant keys yet (they are created with the first encrypted value)")
    for tenant_id, rows in info["tenants"].items():
        parts = [f"{r['purpose']} v{r['version']} {r['status']} (id {r['key_id']})" for r in rows]
        click.echo(f"tenant {tenant_id}: " + "; ".join(parts))
    from appliance.web.crypto.master_rotation import leftover_note

    note = leftover_note(ctx.instance(), info["database_master_key_id"])
    if note:
        click.echo(f"note: {note}")
    for job in info["running_rotations"]:
        click.echo(f"rotation of tenant {job['tenant_id']} unfinished since {job['started_at']:%Y-%m-%d %H:%M}: "
                   f"{job['rows_done']} rows done; run 'appliance keys rotate-tenant {job['tenant_id']}' to resume")


@keys.command("rotate-master")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--prepare", is_flag=True,
              help="Only write the new key to keys/master.key.new, to copy to every app host first.")
@click.option("--prepared", is_flag=True, help="Rotate to the key that --prepare wrote.")
@pass_ctx
def rotate_master_cmd(ctx, yes, prepare, prepared):
    """Re-wrap every data key under a new master key (no row data is touched).

    Online: running web and worker processes follow by themselves. The old
    key file moves to keys/retired/: keep it while backups taken before the
    rotation may still need restoring, then delete it. Take a new recovery
    kit afterwards. Several app hosts: run with --prepare, copy
    keys/master.key.new to every app host, then run with --prepared.
    """
    from appliance.web.crypto import MasterKeyError
    from appliance.web.crypto.master_rotation import pending_path, prepare_new_key, rotate_master

    if prepare and prepared:
        raise click.UsageError("Give --prepare or --prepared, not both.")
    instance, database, keyring = _open(ctx)
    if prepare:
        try:
            new = prepare_new_key(instance)
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from exc
        pending = pending_path(keyring.master.path)
        click.echo(f"new master key {new.key_id} written to {pending} (nothing uses it yet). Copy it "
                   f"to the same path on every other app host (mode 0600, the service user's), then "
                   f"run 'appliance --home {instance.home} keys rotate-master --prepared' here.")
        return
    if prepared and (keyring.master.source != "file" or not pending_path(keyring.master.path).exists()):
        raise click.ClickException(
            f"No prepared key: run 'appliance --home {instance.home} keys rotate-master --prepare' first.")
    new_passphrase = None
    if keyring.master.source == "passphrase":
        new_passphrase = click.prompt("New master key passphrase", hide_input=True, confirmation_prompt=True)
    if not yes:
        click.confirm(f"Replace master key {keyring.master.key_id}?", abort=True)
    with database.connection_context():
        try:
            new = rotate_master(instance, keyring=keyring, new_passphrase=new_passphrase,
                                use_prepared=prepared)
        except MasterKeyError as exc:
            raise click.ClickException(str(exc)) from exc
        _audit("keys.rotate_master", master_key_id=new.key_id)
    follow = ("Running web and worker processes follow by themselves"
              if new.source == "file" else
              "Restart the web and worker services with the new APPLIANCE_MASTER_PASSPHRASE")
    click.echo(f"master key rotated: {new.key_id} is now in use ({new.describe()}). {follow}; "
               f"run 'appliance keys export-recovery' for a new recovery kit.")


@keys.command("rotate-tenant")
@click.argument("tenant", required=False)
@click.option("--all", "all_tenants", is_flag=True, help="Every tenant that has encrypted data.")
@click.option("--batch-size", default=2000, show_default=True, help="Rows re-encrypted per transaction.")
@pass_ctx
def rotate_tenant_cmd(ctx, tenant, all_tenants, batch_size):
    """Give TENANT (id or slug) a new data key and re-encrypt its rows online.

    Resumable: run it again after an interruption and it continues with the
    same new key. The web app keeps serving throughout.
    """
    from appliance.web.crypto.rotation import TenantRotation, tenants_with_keys

    if bool(tenant) == bool(all_tenants):
        raise click.UsageError("Give one TENANT or --all.")
    _, database, keyring = _open(ctx)
    _import_models()
    with database.connection_context():
        targets = tenants_with_keys() if all_tenants else [_tenant_id(tenant)]
        if not targets:
            click.echo("no tenant has encrypted data yet: nothing to rotate")
            return
        incomplete = []
        # Activate every new key first: each rotation waits for the other processes to
        # pick up its key (crypto_key_cache_seconds), and this way that wait is paid once.
        rotations = [TenantRotation(t, batch_size=batch_size, keyring=keyring) for t in targets]
        for rotation in rotations:
            rotation.start()
        for rotation in rotations:
            tenant_id, started = rotation.tenant_id, rotation.result
            total = rotation.pending()
            verb = "resuming" if started.resumed else "rotating"
            done_before = started.rows_rewritten  # rows moved by an interrupted earlier run
            began = time.monotonic()
            with click.progressbar(length=total, label=f"{verb} tenant {tenant_id}", file=sys.stderr) as bar:
                result = rotation.run(progress_cb=bar.update)
            elapsed = max(time.monotonic() - began, 1e-9)
            click.echo(f"tenant {tenant_id}: new data key {result.new_key_id}; {result.rows_rewritten} rows "
                       f"re-encrypted ({(result.rows_rewritten - done_before) / elapsed:,.0f} rows/s)"
                       + ("; old key retired" if result.retired else ""))
            for note in result.notes:
                click.echo(f"  {note}")
            _audit("keys.rotate_tenant", tenant_id=tenant_id, data_key_id=result.new_key_id,
                   finished=bool(result.retired))
            if not result.retired:
                incomplete.append(tenant_id)
    if incomplete:
        raise click.ClickException(f"rotation not finished for tenant(s) {incomplete}: see above")


@keys.command("export-recovery")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the kit to this file (0600) instead of standard output.")
@pass_ctx
def export_recovery(ctx, output):
    """Print a recovery kit: the master key sealed under a passphrase you choose.

    Store it away from the server and its backups (print it, or put it in a
    safe); with the kit and the passphrase, 'keys import-recovery' rebuilds
    the key file.
    """
    from appliance.core.config import write_secret_file
    from appliance.web.crypto.master import export_recovery_kit

    instance, _database, keyring = _open(ctx)
    passphrase = os.environ.get("APPLIANCE_RECOVERY_PASSPHRASE") or click.prompt(
        "Recovery passphrase (12+ characters)", hide_input=True, confirmation_prompt=True)
    try:
        kit = export_recovery_kit(keyring.master, passphrase, label=str(instance.home))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with _database.connection_context():
        _audit("keys.export_recovery", master_key_id=keyring.master.key_id)
    if output:
        if not write_secret_file(output, kit.encode()):
            raise click.ClickException(f"{output} exists; choose another file.")
        click.echo(f"recovery kit for master key {keyring.master.key_id} written to {output}", err=True)
    else:
        click.echo(kit, nl=False)


@keys.command("import-recovery")
@click.argument("kit", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Replace an existing key file that does not match the database.")
@pass_ctx
def import_recovery(ctx, kit, replace):
    """Rebuild the master key file from a recovery kit (KIT may be '-' for standard input)."""
    from peewee import SqliteDatabase

    from appliance.core.config import write_secret_file
    from appliance.web import db as dbmod
    from appliance.web.crypto import MasterKeyError, key_file_path
    from appliance.web.crypto.master import encode_key_file, master_key_id, open_recovery_kit
    from appliance.web.crypto.tables import CryptoMaster
    from appliance.web.startup import check_database

    instance = ctx.instance()
    text = kit.read()
    passphrase = os.environ.get("APPLIANCE_RECOVERY_PASSPHRASE") or click.prompt(
        "Recovery passphrase", hide_input=True)
    try:
        key = open_recovery_kit(text, passphrase)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    database = dbmod.bind(instance.database_url)
    row = None
    # Keys may come back before the database does (a restore to a new host): with no SQLite
    # file yet there is nothing to check the kit against, and none must be created here.
    if not (isinstance(database, SqliteDatabase) and not Path(database.database).exists()):
        check_database(instance, database)
        with database.connection_context():
            row = CryptoMaster.select().first() if database.table_exists("crypto_master") else None
    if row is not None and row.master_key_id != master_key_id(key):
        raise click.ClickException(
            f"This kit holds master key {master_key_id(key)}, but the database needs {row.master_key_id}: "
            "use the kit taken for this database (or after its last master key rotation).")
    path = key_file_path(instance)
    if path.exists():
        if not replace:
            raise click.ClickException(f"{path} exists; pass --replace to move it to keys/retired/ first.")
        from appliance.web.crypto.master_rotation import retire_file

        retire_file(path, "replaced-" + time.strftime("%Y%m%d%H%M%S"))
    write_secret_file(path, encode_key_file(key))
    click.echo(f"master key {master_key_id(key)} restored to {path}")


@keys.command()
@click.option("--show", default=20, show_default=True, help="How many failures to list.")
@pass_ctx
def verify(ctx, show):
    """Decrypt-check every encrypted value; list failures and carry on to the end."""
    from appliance.web.crypto.admin import count_rows, verify_all

    _, database, keyring = _open(ctx)
    _import_models()
    with database.connection_context():
        total = count_rows()
        with click.progressbar(length=total, label="verifying", file=sys.stderr) as bar:
            report = verify_all(keyring=keyring, progress_cb=bar.update)
    click.echo(f"{report.values_checked} values in {report.rows_checked} rows checked; "
               f"{len(report.failures)} failed")
    for failure in report.failures[:show]:
        click.echo(f"  {failure['table']} id={failure['pk']} uid={failure['uid']} "
                   f"column={failure['column']}: {failure['reason']}")
    if len(report.failures) > show:
        click.echo(f"  ... and {len(report.failures) - show} more")
    if report.failures:
        raise SystemExit(1)


def _audit(action: str, tenant_id=None, **details) -> None:
    """Key operations belong in the audit trail (an operator at the console: no actor id)."""
    from appliance.web.models.audit import record

    record(action, tenant_id=tenant_id, target="keys", **details)


def _import_models():
    """Register the encrypted models so rotation and verify see every table."""
    import appliance.web.models  # noqa: F401


def _tenant_id(text: str) -> int:
    if text.isdigit():
        return int(text)
    from appliance.web.models.tenancy import Tenant

    tenant = Tenant.get_or_none(Tenant.slug == text)
    if tenant is None:
        raise click.BadParameter(f"no tenant with slug {text!r}")
    return tenant.id
