"""``appliance vendor ...`` commands for the sync receiver (attached to the vendor group)."""

from __future__ import annotations

import json
from pathlib import Path

import click

DB_OPTION = click.option(
    "--db",
    "db_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The receiver's SQLite file (created if missing).",
)


def _open(db_path):
    from appliance.vendor_tools.receiver.models import open_db

    return open_db(db_path)


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise click.ClickException(f"the admin token in {path} is too short (16+ characters)")
    return token


@click.command("serve-sync")
@DB_OPTION
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--threads", default=4, show_default=True, type=int)
@click.option(
    "--admin-token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Enables the admin endpoints (register, list); without it they answer 403.",
)
def serve_sync(db_path, host, port, threads, admin_token_file):
    """Run the receiver for appliances' usage reports (put TLS in front of it)."""
    from waitress import serve

    from appliance.vendor_tools.receiver.app import create_app

    app = create_app(db_path, admin_token=_read_token(admin_token_file))
    click.echo(f"sync receiver on http://{host}:{port} (database {db_path})")
    serve(app, host=host, port=port, threads=threads, ident="vendor-sync")


@click.command("register-installation")
@DB_OPTION
@click.option("--id", "installation_id", required=True, help="From 'appliance sync identity'.")
@click.option("--public-key", "public_key_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--label", help="Your own note, e.g. the customer's name.")
@click.option("--replace", is_flag=True, help="Accept a new key for a known installation.")
def register_installation(db_path, installation_id, public_key_file, label, replace):
    """Trust an installation's public key, so its reports are accepted."""
    from appliance.vendor_tools.receiver import service

    db = _open(db_path)
    with db.connection_context():
        try:
            row, changed = service.register_installation(
                installation_id, Path(public_key_file).read_text(), label, replace=replace
            )
        except service.RegistrationError as exc:
            raise click.ClickException(str(exc)) from exc
    verb = "registered" if changed else "already registered with this key:"
    click.echo(f"{verb} {row.installation_id} ({row.fingerprint})")


@click.command("sync-installations")
@DB_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sync_installations(db_path, as_json):
    """List installations with their latest reported usage."""
    from appliance.vendor_tools.receiver import service

    db = _open(db_path)
    with db.connection_context():
        rows = service.list_installations()
        latest = service.latest_version()
    if as_json:
        click.echo(json.dumps({"installations": [r.to_json() for r in rows], "latest_version": latest}, indent=2))
        return
    click.echo(f"latest version announced: {latest or 'none set'}")
    for r in rows:
        click.echo(
            f"{r.installation_id}  {r.label or '-'}  v{r.version or '?'} {r.profile or '?'}  "
            f"last seen {r.last_seen_at or 'never'}  day {r.latest_day or '-'}: "
            f"{r.tenants} tenants, {r.conversations} conversations, {r.messages} messages, "
            f"{r.active_operators} active operators, {r.seats_used} seats"
        )


@click.command("sync-import")
@DB_OPTION
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def sync_import(db_path, files):
    """Store export files carried out of air-gapped sites (same checks as the upload page)."""
    from appliance.vendor_tools.receiver import service

    db = _open(db_path)
    failed = 0
    with db.connection_context():
        for name in files:
            result = service.receive_export(Path(name).read_bytes())
            if result["status"] == "rejected":
                failed += 1
                click.echo(f"{name}: rejected ({result['code']}): {result['reason']}", err=True)
            else:
                click.echo(f"{name}: {result['status']} {result['report_id']}")
    if failed:
        raise SystemExit(1)


@click.command("sync-set-licence")
@DB_OPTION
@click.option("--id", "installation_id", required=True)
@click.option("--licence", "licence_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--pub", type=click.Path(exists=True), help="Extra trusted public key file or directory.")
def sync_set_licence(db_path, installation_id, licence_file, pub):
    """Hand a renewed licence to an installation on its next sync."""
    from appliance.core.licence import LicenceError, TrustStore, verify_licence
    from appliance.vendor_tools.receiver import service

    text = Path(licence_file).read_text()
    try:
        licence = verify_licence(text, TrustStore.load(pub))
    except LicenceError as exc:
        raise click.ClickException(f"not handing out this licence: {exc}") from exc
    if licence.installation_id and licence.installation_id != installation_id:
        raise click.ClickException(
            f"the licence is bound to installation {licence.installation_id}, not {installation_id}"
        )
    db = _open(db_path)
    with db.connection_context():
        try:
            service.set_licence(installation_id, text)
        except service.RegistrationError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"licence {licence.licence_id} will be offered to {installation_id} on its next sync")


@click.command("sync-set-latest-version")
@DB_OPTION
@click.argument("version")
def sync_set_latest_version(db_path, version):
    """Announce the latest appliance version to every installation that syncs."""
    from appliance.vendor_tools.receiver import service

    db = _open(db_path)
    with db.connection_context():
        try:
            service.set_latest_version(version)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"latest version is now {version}")


COMMANDS = [
    serve_sync,
    register_installation,
    sync_installations,
    sync_import,
    sync_set_licence,
    sync_set_latest_version,
]
