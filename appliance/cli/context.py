"""What every command gets: the click context object, and the one way to open the database."""

from __future__ import annotations

from contextlib import contextmanager

import click

from appliance.core.config import ConfigError, Instance
from appliance.core.identity import IdentityError


class Context:
    """The instance directory named by ``--home``, loaded on first use."""

    def __init__(self, home):
        self.home_arg = home
        self._instance = None

    def instance(self, require_config=True) -> Instance:
        if self._instance is None:
            try:
                self._instance = Instance.load(self.home_arg, require_config=require_config)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._instance


pass_ctx = click.make_pass_decorator(Context)


@contextmanager
def open_database(instance: Instance):
    """Bind the instance's database for one command, refusing a schema with pending migrations.

    A command that ran against a half-migrated schema would fail later with a bare
    database error; stopping here names the command that fixes it.
    """
    from appliance.web import db as dbmod
    from appliance.web.migrations import pending
    from appliance.web.models.audit import advance_anchor, bind_trail
    from appliance.web.startup import check_database

    database = dbmod.bind(instance.database_url)
    try:
        check_database(instance, database)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    with database.connection_context():
        todo = pending(database)
        if todo:
            raise click.ClickException(
                f"{len(todo)} migration(s) pending: run 'appliance --home {instance.home} migrate' first."
            )
        try:
            bind_trail(instance)  # commands write audit events, chained with the key outside the database
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from exc
        yield database
        advance_anchor()  # events a command wrote inside its own transaction
