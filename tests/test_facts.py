"""Facts the code states once and reads everywhere else: these tests catch a second copy drifting."""

from __future__ import annotations

import dataclasses

import pytest

from appliance.core.config import DEFAULTS, ConfigError, Instance, write_config
from appliance.core.licence.format import MAX_LICENCE_BYTES
from appliance.core.licence.programs import KNOWN_PROGRAMS
from appliance.core.licence.testing import payload
from appliance.core.sizing import PROFILES, SIZED_PROFILES, sizing_dir
from appliance.core.sync.client import SyncConfigError, SyncSettings
from appliance.web.access import Principal, is_provider_admin, is_shared_down, shared_from_ancestors
from appliance.web.models.contact_center import CHANNEL_KINDS, Channel
from appliance.web.services.licence import CHANNEL_PROGRAMS


def test_profile_names_the_config_and_the_sizing_files_agree_on():
    assert DEFAULTS["profile"] in PROFILES
    assert sorted(p.stem for p in sizing_dir().glob("*.yml")) == sorted(SIZED_PROFILES)
    assert set(payload()["profiles"]) <= set(PROFILES)


def test_an_unknown_profile_is_refused_naming_the_file_and_the_choices(tmp_path):
    write_config(tmp_path, {"profile": "huge"})
    with pytest.raises(ConfigError) as refused:
        Instance.load(tmp_path)
    message = str(refused.value)
    assert "'huge'" in message and str(tmp_path / "config.yml") in message
    assert all(name in message for name in PROFILES)


def test_programs_channels_and_evaluation_use_the_one_list():
    assert set(CHANNEL_PROGRAMS) == set(CHANNEL_KINDS)
    assert set(CHANNEL_PROGRAMS.values()) <= set(KNOWN_PROGRAMS)
    assert set(payload()["programs"]) <= set(KNOWN_PROGRAMS)


def test_the_api_accepts_exactly_the_licence_size_the_format_does():
    from appliance.web.api.licence import INSTALL_BODY

    assert INSTALL_BODY["text"].max_length == MAX_LICENCE_BYTES


def test_defaults_list_every_sync_setting_the_sender_reads():
    names = {f.name for f in dataclasses.fields(SyncSettings)}
    assert names <= set(DEFAULTS["sync"])
    settings = SyncSettings.from_config(DEFAULTS["sync"], enabled=True)
    assert settings.enabled is True and settings.max_requests_per_day == DEFAULTS["sync"]["max_requests_per_day"]
    with pytest.raises(SyncConfigError, match="read_timeout"):
        SyncSettings.from_config({k: v for k, v in DEFAULTS["sync"].items() if k != "read_timeout"})


def test_a_loaded_instance_has_every_default_even_under_a_partial_sync_section(tmp_path):
    write_config(tmp_path, {"sync": {"vendor_url": "https://vendor.example"}})
    sync = Instance.load(tmp_path)["sync"]
    assert sync["vendor_url"] == "https://vendor.example"
    assert {k: v for k, v in sync.items() if k != "vendor_url"} == {
        k: v for k, v in DEFAULTS["sync"].items() if k != "vendor_url"}


def test_shared_down_only_from_ancestors(app, world):
    t, objects = world.tenants, world.objects
    with app.app_context():
        assert is_shared_down(objects["A"]["shared_channel"], t["A1"])
        assert is_shared_down(objects["P"]["shared_article"], t["A1"])
        assert not is_shared_down(objects["A"]["channel"], t["A1"])  # not flagged shared
        assert not is_shared_down(objects["A1"]["shared_channel"], t["A1"])  # its own
        assert not is_shared_down(objects["A1"]["shared_channel"], t["A"])  # a descendant's
        assert not is_shared_down(objects["A2"]["shared_channel"], t["A1"])  # a sibling's
        assert not is_shared_down(objects["B"]["shared_channel"], t["A1"])  # another account's
        listed = {c.id for c in shared_from_ancestors(Channel, t["A1"])}
        assert listed == {objects["A"]["shared_channel"].id, objects["P"]["shared_channel"].id}


def test_provider_admin_is_an_admin_of_the_provider_tenant_only(app, world):
    with app.app_context():
        assert is_provider_admin(Principal.for_user(world.users[("P", "admin")]))
        assert not is_provider_admin(Principal.for_user(world.users[("P", "supervisor")]))
        assert not is_provider_admin(Principal.for_user(world.users[("A", "admin")]))
        assert not is_provider_admin(None)


def test_a_round_runs_the_jobs_it_is_given_and_reports_each_failure(app):
    from appliance.web.channels.email.service import email_job
    from appliance.web.jobs import all_jobs, run_round
    from appliance.web.services.licence import licence_clock_job
    from appliance.web.services.live import prune_job
    from appliance.web.services.outbox import outbox_job
    from appliance.web.services.pollers import poll_job
    from appliance.web.services.throttle import security_cleanup_job
    from appliance.web.sync.service import sync_job

    jobs = all_jobs()
    assert {sync_job, licence_clock_job, security_cleanup_job, prune_job, poll_job, outbox_job, email_job} <= set(jobs)
    assert len(set(jobs)) == len(jobs)  # each once per round
    ran = []

    def broken(app):
        raise RuntimeError("disk full")

    def fine(app):
        ran.append("fine")

    assert run_round(app, [broken, fine]) == [("broken", "RuntimeError: disk full")]
    assert ran == ["fine"]


def test_every_config_rule_names_a_default_and_the_roles_are_the_models():
    from appliance.core.config import ROLES, RULES
    from appliance.web.models.tenancy import ROLES as MODEL_ROLES

    def walk(rules, defaults, prefix=""):
        for key, rule in rules.items():
            assert key in defaults, f"RULES has {prefix}{key}, which DEFAULTS does not"
            if isinstance(rule, dict):
                walk(rule, defaults[key], f"{prefix}{key}.")

    walk(RULES, DEFAULTS)
    assert ROLES == MODEL_ROLES


def test_the_defaults_pass_their_own_schema():
    from appliance.core.config import RULES
    from appliance.core.config_schema import problems

    assert problems(DEFAULTS, DEFAULTS, RULES) == []
