"""Commands for one instance: init, migrate, serve, worker, demo, status."""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import click

from appliance.cli.context import pass_ctx
from appliance.core.config import ConfigError, Instance, resolve_home


def _fail(message: str):
    raise click.ClickException(message)


@click.command()
@click.option("--admin-email", help="E-mail of the first provider admin.")
@click.option("--admin-password", envvar="APPLIANCE_ADMIN_PASSWORD",
              help="Password of the first provider admin (10+ characters). Env: APPLIANCE_ADMIN_PASSWORD, "
                   "which unlike an argument does not show in the process list.")
@click.option("--admin-password-stdin", is_flag=True,
              help="Read the first admin's password from the first line of standard input (for installers: "
                   "unlike an argument or the environment it shows in no process list and no sudo log).")
@click.option("--force-password-change", is_flag=True,
              help="The first admin must choose a new password at first login (for a generated password).")
@click.option("--provider-name", default="Provider", show_default=True, help="Name of the level-1 tenant.")
@click.option("--database-url", help="Only for a new config: e.g. postgresql://user:pw@host/db.")
@pass_ctx
def init(ctx, admin_email, admin_password, admin_password_stdin, force_password_change, provider_name,
         database_url):
    """Create (or complete) an instance: config, keys, schema, first admin.

    Safe to run again: existing config and keys are kept, the admin is only
    created while the database has no user.
    """
    from appliance.web import provisioning as setup
    from appliance.web.services import ServiceError

    if admin_password_stdin:
        if admin_password:
            _fail("Give the admin password once: --admin-password-stdin or --admin-password "
                  "(APPLIANCE_ADMIN_PASSWORD), not both.")
        # Read before anything else, so the writer of the pipe never blocks on us.
        admin_password = sys.stdin.readline().rstrip("\r\n")
        if not admin_password:
            _fail("--admin-password-stdin: standard input held no password (one line expected).")

    try:
        home = resolve_home(ctx.home_arg)
    except ConfigError as exc:
        _fail(str(exc))
    with _disk_faults_named(home):
        home.mkdir(parents=True, exist_ok=True, mode=0o750)
        changed = []
        if setup.ensure_config(home, {"database_url": database_url} if database_url else None):
            changed.append("config")
        instance = ctx.instance()
        changed += setup.ensure_keys(instance)
    applied = _migrate(instance)
    changed += applied
    from appliance.web import db as dbmod
    from appliance.web.models.tenancy import User

    database = dbmod.bind(instance.database_url)
    with _disk_faults_named(home, database), database.connection_context():
        has_user = User.select().exists()
    if not has_user:
        if not admin_email and sys.stdin.isatty():
            admin_email = click.prompt("Provider admin e-mail")
        if not admin_password and sys.stdin.isatty():
            admin_password = click.prompt("Provider admin password", hide_input=True, confirmation_prompt=True)
        if not admin_email or not admin_password:
            _fail("No user exists yet: pass --admin-email and --admin-password for the first provider admin.")
        try:
            with _disk_faults_named(home, database):
                setup.ensure_provider_admin(instance, admin_email, admin_password, provider_name,
                                            must_change_password=force_password_change)
        except ServiceError as exc:
            _fail(str(exc))
        changed.append("provider admin")
    if changed:
        click.echo(f"initialised {instance.home}: {', '.join(changed)}")
    else:
        click.echo(f"already initialised: {instance.home}")


@contextmanager
def _disk_faults_named(home: Path, database=None):
    """A full or failing disk as one line naming it; every step of init is whole or absent.

    Key and config files are written to a temporary name and renamed, and each
    migration is one transaction, so a re-run of init continues where this one stopped.
    """
    from appliance.web.readiness import classify

    try:
        yield
    except Exception as exc:
        fault = classify(exc, database, home)
        if fault is None or fault.kind not in ("disk_full", "disk_io"):
            raise
        _fail(f"{fault.reason} ({fault.detail}): free space there and run 'appliance --home {home} init' "
              "again; it continues where it stopped, nothing half-written was kept.")


def _migrate(instance: Instance, create: bool = True) -> list[str]:
    from appliance.web import db as dbmod
    from appliance.web import provisioning as setup

    try:
        with _disk_faults_named(instance.home, dbmod.open_database(instance.database_url)):
            return setup.migrate(instance, progress=lambda m: click.echo(m, err=True), create=create)
    except ConfigError as exc:  # master key missing or wrong: nothing was changed
        _fail(str(exc))
    except click.ClickException:
        raise
    except Exception as exc:  # database down, wrong URL, permissions: say which
        _fail(f"Migration failed ({type(exc).__name__}: {exc}). Nothing after the last good step was applied.")


@click.command()
@pass_ctx
def migrate(ctx):
    """Apply pending schema migrations (each in its own transaction); init creates the database."""
    applied = _migrate(ctx.instance(), create=False)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema up to date")


def _build_app(instance: Instance):
    from appliance.web import create_app

    try:
        return create_app(instance=instance)
    except ConfigError as exc:
        _fail(str(exc))


PORT = click.IntRange(1, 65535)


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    """One line saying why (host, port) cannot be listened on and what to pass instead."""
    if exc.errno == errno.EADDRINUSE:
        return f"Port {port} on {host} is in use: pass --port N (or stop what holds it)."
    if exc.errno == errno.EACCES:
        return f"Port {port} on {host} needs privileges this user does not have: pass --port N (1024 or above)."
    return f"Cannot listen on {host} port {port} ({exc.strerror or exc}): check --host and --port."


def _port_problem(host: str, port: int) -> str | None:
    """Why serving on (host, port) would fail, found by binding and releasing a socket.

    The demo asks before it spends time building and seeding an instance. Binding
    with SO_REUSEADDR as waitress does keeps a port that is only in TIME_WAIT usable.
    """
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as exc:
        return _cannot_listen(host, port, exc)
    return None


def _listen(app, host: str, port: int, options: dict):
    """A waitress server bound to (host, port), or a one-line error naming the port.

    Binding before anything prints a URL means a busy port is never announced as
    served; the port can also be taken between a check and this bind. ``options``
    are the limits from appliance.cli.server.
    """
    import logging

    from waitress import create_server

    logging.basicConfig()  # waitress's warnings (queue depth, bad requests) reach the terminal
    try:
        return create_server(app, host=host, port=port, ident="appliance", **options)
    except OSError as exc:
        _fail(_cannot_listen(host, port, exc))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=PORT)
@click.option("--threads", type=click.IntRange(1, 1024), help="Default: server_threads in config.yml.")
@pass_ctx
def serve(ctx, host, port, threads):
    """Serve the web app with waitress (the embedded default)."""
    from appliance.cli.server import server_options

    instance = ctx.instance()
    app = _build_app(instance)
    _check_schema(app)
    server = _listen(app, host, port, server_options(instance, threads))
    click.echo(f"Serving {instance.home} on http://{host}:{port}/ (Ctrl+C stops)")
    server.run()


def _check_schema(app):
    """Refuse a schema with pending migrations; a database that is down only warns (pages say 503).

    It asks the app's own database: ``create_app`` has checked the file and bound it.
    Binding a second database here would leave the models on it (never closed) while the
    requests open and close the app's; and on SQLite, checking the file again opens and
    closes it beside the app's open connections, which drops every lock they hold on it
    (POSIX locks belong to the process). Another process's last connection then takes
    the WAL away under this one's: "database disk image is malformed".
    """
    from peewee import InterfaceError, OperationalError

    from appliance.web.migrations import pending
    from appliance.web.readiness import classify

    database = app.extensions["database"]
    instance = app.extensions["appliance_instance"]
    try:
        with database.connection_context():
            todo = pending(database)
    except (OperationalError, InterfaceError) as exc:
        fault = classify(exc, database)
        click.echo(f"warning: {fault.reason}; pages answer {fault.status} until it is back, "
                   "then this process connects by itself", err=True)
        return
    if todo:
        raise click.ClickException(
            f"{len(todo)} migration(s) pending: run 'appliance --home {instance.home} migrate' first.")


@click.command()
@click.option("--interval", default=30.0, show_default=True, help="Seconds between job rounds.")
@click.option("--once", is_flag=True, help="Run one round of jobs and exit.")
@pass_ctx
def worker(ctx, interval, once):
    """Run background jobs (future-dated changes, sync, reminders) until SIGTERM."""
    from appliance.web.jobs import run_round

    instance = ctx.instance()
    app = _build_app(instance)
    _check_schema(app)
    readiness = app.extensions["readiness"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"worker started for {instance.home}")
    retry, waited = 1.0, False
    while not stop.is_set():
        fault = readiness.probe()
        if fault is not None:  # wait for the database instead of failing every job
            if once:
                _fail(f"{fault.reason}: no job was run.")
            click.echo(f"waiting: {fault.reason}; next try in {retry:g} s [{fault.detail}]", err=True)
            stop.wait(retry)
            retry = min(retry * 2, max(interval, 1.0))
            waited = True
            continue
        if waited:
            click.echo("the database answers again: running jobs", err=True)
        retry, waited = 1.0, False
        for name, error in run_round(app):
            click.echo(f"job {name} failed: {error}", err=True)
        if once:
            break
        stop.wait(interval)
    click.echo("worker stopped")


@contextmanager
def _stop_signals_interrupt():
    """SIGTERM and SIGHUP (the terminal closing) end the command as Ctrl+C does.

    Python turns only SIGINT into an exception; the other two would end the process
    without running `finally`, and the demo removes its instance in one.
    """
    def _stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _remove_tree(path: Path):
    """Remove a directory with stop signals held off: a second Ctrl+C would leave half of it."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stops}
    try:
        shutil.rmtree(path, ignore_errors=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=PORT)
@click.option("--conversations", default=300, show_default=True, type=int)
@click.option("--no-serve", is_flag=True, help="Create the demo instance, keep it and exit.")
@click.pass_context
def demo(click_ctx, host, port, conversations, no_serve):
    """A throwaway instance with a 3-level tenant tree, users of each role and demo data.

    Without --home it lives in a new temporary directory that is removed when the
    demo stops (Ctrl+C, SIGTERM, an error); --no-serve keeps it. A --home given by
    the user is never removed.
    """
    if not no_serve:
        problem = _port_problem(host, port)
        if problem:
            _fail(problem)
    home_arg = click_ctx.obj.home_arg
    if home_arg:
        home = Path(home_arg)
        if (home / "config.yml").exists():
            _fail(f"{home} already holds an instance; demo wants a fresh directory (or none).")
        home.mkdir(parents=True, exist_ok=True)
        _run_demo(home, host, port, conversations, no_serve)
        return
    with _stop_signals_interrupt():
        home = Path(tempfile.mkdtemp(prefix="appliance-demo-"))
        kept = False
        try:
            _run_demo(home, host, port, conversations, no_serve)
            kept = no_serve
        finally:
            if kept:
                click.echo(f"Kept {home}: serve it with 'appliance --home {home} serve'; remove it when done.")
            else:
                _remove_tree(home)
                click.echo(f"Removed the demo instance {home}", err=True)


def _run_demo(home: Path, host: str, port: int, conversations: int, no_serve: bool):
    from appliance.cli.server import server_options
    from appliance.web import provisioning as setup
    from appliance.web.demo import DEMO_PASSWORD, seed

    setup.ensure_config(home)  # the defaults: SQLite, the embedded profile
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    app = _build_app(instance)
    with app.app_context():
        logins = seed(count=conversations)
        # No worker runs beside the demo: its report figures are computed once, here.
        from appliance.web.services.reports import reports_job

        reports_job(app)
    server = None if no_serve else _listen(app, host, port, server_options(instance))
    click.echo(f"Demo instance: {home}")
    click.echo(f"Password for every demo login: {DEMO_PASSWORD}")
    for email, what in logins:
        click.echo(f"  {email:38} {what}")
    if server is None:
        return
    click.echo(f"Open http://{host}:{port}/login  (Ctrl+C stops)")
    sys.stdout.flush()
    server.run()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx, as_json):
    """The installation's state at a glance (the same checks as the System page)."""
    import json

    from appliance.web.system_status import collect, offline

    instance = ctx.instance()
    app = _build_app(instance)
    database = app.extensions["database"]
    fault = app.extensions["readiness"].probe()
    with app.app_context():
        if fault is not None:  # a database that is down is a finding, not a crash
            checks = offline(instance, fault)
        else:
            with database.connection_context():
                checks = collect(instance, database)
    if as_json:
        click.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for check in checks:
            click.echo(f"{check.level.upper():6} {check.name:18} {check.detail}")
    if any(c.level == "error" for c in checks):
        raise SystemExit(1)



COMMANDS = [init, migrate, serve, worker, demo, status]
