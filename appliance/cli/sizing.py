"""``appliance sizing``: which profile and hosts a load needs, from ``sizing/*.yml``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from appliance.core import inventory
from appliance.core.sizing import SIZED_PROFILES, SizingError, format_recommendation, load_profile, recommend


@click.group("sizing")
def sizing():
    """Deployment profiles (sizing/*.yml) and the sizing calculator."""


@sizing.command("recommend")
@click.option("--conversations-per-day", type=click.IntRange(min=0), required=True,
              help="Conversations the site expects on a busy day.")
@click.option("--operators", type=click.IntRange(min=0), required=True,
              help="Operators (agents, supervisors) working at the same time.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recommend_command(conversations_per_day, operators, as_json):
    """Print the profile and host sizes for a load, and why."""
    try:
        rec = recommend(conversations_per_day, operators)
    except SizingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(rec, indent=2) if as_json else format_recommendation(rec))


@sizing.command("show")
@click.argument("profile", type=click.Choice(SIZED_PROFILES))
def show_command(profile):
    """Print a profile as Ansible and the tools read it."""
    try:
        data = load_profile(profile)
    except SizingError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@sizing.command("inventory")
@click.option("--profile", help="minimal, medium or maximal (or take it from --recommendation).")
@click.option("--recommendation", type=click.File("r"),
              help="The answer of 'appliance sizing recommend --json' (- for standard input): its profile "
                   "and host counts.")
@click.option("--hosts", "host_options", multiple=True, required=True, metavar="KIND=NAME[@ADDRESS],...",
              help="Hosts of one kind (see 'appliance sizing show PROFILE'); repeat per kind. KIND= may be "
                   "left out when the profile has one kind of host.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The inventory directory to write.")
@click.option("--admin-email", default="admin@example.internal", show_default=True,
              help="E-mail of the first provider admin.")
@click.option("--server-name", help="The name clients use (default: the first app host's name).")
@click.option("--bundle-dir", help="The offline bundle on the control machine (default: dist/bundle of "
                                   "this checkout).")
@click.option("--ssh-user", default="deploy", show_default=True, help="The account Ansible logs in as.")
@click.option("--force", is_flag=True, help="Write into a directory that is not empty.")
def inventory_command(profile, recommendation, host_options, out, admin_email, server_name, bundle_dir,
                      ssh_user, force):
    """Write a ready inventory folder (hosts.yml, group_vars/all.yml) for a profile and your hosts."""
    try:
        counts = None
        if recommendation is not None:
            try:
                answer = json.load(recommendation)
            except ValueError as exc:
                raise inventory.InventoryError(f"--recommendation: not JSON ({exc}).") from None
            recommended, counts = inventory.counts_from_recommendation(answer)
            if profile and profile != recommended:
                raise inventory.InventoryError(f"--profile {profile} contradicts the recommendation "
                                               f"({recommended}): leave --profile out.")
            profile = recommended
        if profile not in SIZED_PROFILES:
            raise inventory.InventoryError(f"--profile {profile!r}: choose one of {', '.join(SIZED_PROFILES)}."
                                           if profile else "Give --profile (minimal, medium or maximal) or "
                                           "--recommendation.")
        root = inventory.repository_root()
        specs = inventory.argument_specs(root) if root else None
        server = server_name or _first_app_host(profile, host_options)
        bundle_dir = bundle_dir or str((root or Path.cwd()) / "dist" / "bundle")
        files, missing = inventory.render(profile, host_options, admin_email=admin_email, server_name=server,
                                          bundle_dir=bundle_dir, ssh_user=ssh_user, counts=counts, specs=specs)
        written = inventory.write(out, files, force=force)
    except (inventory.InventoryError, SizingError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in written:
        click.echo(f"wrote {path}")
    if specs is None:
        click.echo("note: playbooks/ and roles/ not found (set APPLIANCE_PLAYBOOKS_ROOT): the argument specs "
                   "were not consulted; the preflight checks them.", err=True)
    if missing:
        click.echo("set these required variables in group_vars/all.yml before the preflight: "
                   + ", ".join(sorted(missing)), err=True)
    click.echo(f"next: ansible-playbook -i {out} playbooks/preflight.yml")


def _first_app_host(profile: str, host_options) -> str:
    """The first app host's name, the default TLS name (an error about the hosts comes later)."""
    kinds = {k for k, spec in load_profile(profile)["hosts"].items() if "appliance_app" in spec["groups"]}
    for value in host_options:
        kind, sep, listed = value.partition("=")
        if not sep or kind in kinds:
            first = (listed if sep else value).split(",")[0].partition("@")[0].strip()
            if first:
                return first
    return "cc.example.internal"
