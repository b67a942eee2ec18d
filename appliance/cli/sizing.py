"""``appliance sizing``: which profile and hosts a load needs, from ``sizing/*.yml``."""

from __future__ import annotations

import json

import click
import yaml

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
