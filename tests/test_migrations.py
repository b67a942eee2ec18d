"""Migrations upgrade an existing database in place and record the schema version."""

from __future__ import annotations

from appliance.core.config import Instance
from appliance.web import db as dbmod
from appliance.web import migrations
from appliance.web import provisioning as setup


def test_upgrade_in_place_keeps_data(tmp_path, db_url, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    setup.ensure_config(home, {"database_url": db_url})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    everything = migrations.available()
    assert everything[0] == (1, "m0001_core") and len(everything) >= 1
    # An older release knew only the first migration.
    monkeypatch.setattr(migrations, "available", lambda: everything[:1])
    assert setup.migrate(instance) == ["m0001_core"]
    database = dbmod.bind(instance.database_url)
    with database.connection_context():
        from appliance.web.models.tenancy import Tenant

        Tenant.insert(level=1, kind="provider", name="Old data", slug="old", path="/1/").execute()
        assert migrations.current_version(database) == 1
    monkeypatch.setattr(migrations, "available", lambda: everything)
    applied = setup.migrate(instance)
    assert applied == [name for _, name in everything[1:]]
    with database.connection_context():
        assert Tenant.get(Tenant.slug == "old").name == "Old data"
        assert migrations.current_version(database) == everything[-1][0]
        versions = [r.version for r in migrations.SchemaVersion.select().order_by(migrations.SchemaVersion.version)]
        assert versions == [v for v, _ in everything]
    assert setup.migrate(instance) == []  # a second run does nothing


def test_failed_migration_rolls_back_and_says_so(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    setup.ensure_config(home, {})
    instance = Instance.load(home)
    setup.ensure_keys(instance)
    setup.migrate(instance)
    database = dbmod.bind(instance.database_url)

    class Broken:
        @staticmethod
        def up(db, migrator):
            db.execute_sql("CREATE TABLE half_done (id INTEGER)")
            raise RuntimeError("disk full")

    import importlib

    real_import = importlib.import_module
    monkeypatch.setattr(migrations, "available", lambda: [(9999, "m9999_broken")])
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: Broken if name.endswith("m9999_broken") else real_import(name, *a))
    with database.connection_context():
        try:
            migrations.upgrade(database)
        except RuntimeError as exc:
            assert "disk full" in str(exc)
        else:
            raise AssertionError("the broken migration should raise")
        assert not database.table_exists("half_done")
        assert 9999 not in {r.version for r in migrations.SchemaVersion.select()}
