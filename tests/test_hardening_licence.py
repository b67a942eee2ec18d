"""The licence clock and binding: deleting or lowering the marks gains nothing and warns;
the evaluation start is MACed; a licence can be bound to the installation's key; the
mark key comes from the installation's private key, not from anything in the database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.core.identity import load_identity
from appliance.core.licence.testing import TestSigner
from appliance.web.models.licence import LicenceClock
from appliance.web.services import licence
from tests.helpers import START, make_instance, running_app, trust_test_signer

DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


@pytest.fixture
def app(tmp_path, monkeypatch, signer, db_url):
    if not db_url.startswith("sqlite"):
        pytest.skip("the marks' logic does not depend on the database")
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    with running_app(make_instance(tmp_path / "home", db_url)) as app:
        yield app


def _install(app, signer, **fields):
    fields.setdefault("now", START)
    with app.app_context():
        lic, _ = licence.service().install(signer.issue(**fields))
        return lic


def _state(app):
    with app.app_context():
        return licence.service().state()


def _delete_both_marks(app):
    LicenceClock.update(high_water=None, high_water_mac=None).where(LicenceClock.id == 1).execute()
    (app.extensions["appliance_instance"].home / licence.MARK_FILE).unlink()


def test_deleting_both_marks_after_expiry_keeps_the_licence_expired_and_warns(app, world, signer, clock):
    _install(app, signer, days=100, grace_days=0)
    clock.set(START + 150 * DAY)
    expired = _state(app)
    assert expired.status != "valid"
    from appliance.web.models.audit import record

    record("test.activity")  # the database's own newest record: day 150
    _delete_both_marks(app)
    clock.set(START + 10 * DAY)  # back into the licence period
    state = _state(app)
    assert state.status != "valid"
    assert state.clock_rollback
    assert any("missing" in m.text and "tampering" in m.text for m in state.messages)


def test_lowering_both_marks_is_detected_without_the_session_key_mattering(app, world, signer, clock):
    clock.set(START + 20 * DAY)
    _state(app)
    # The MAC key is derived from the installation's private key, not the session key:
    # knowing the session key (the config directory) is not enough to forge a mark.
    from appliance.core.licence.state import mark_key, mark_mac

    instance = app.extensions["appliance_instance"]
    session_key = instance.path(instance["secret_key_file"]).read_bytes().strip()
    row = LicenceClock.get_by_id(1)
    forged = "2020-01-01T00:00:00Z"
    LicenceClock.update(high_water=forged, high_water_mac=mark_mac(mark_key(session_key), row.installation_id,
                                                                      forged)).where(LicenceClock.id == 1).execute()
    (instance.home / licence.MARK_FILE).unlink()
    state = _state(app)
    assert any("edited or damaged" in m.text for m in state.messages)


def test_a_new_installation_has_no_mark_and_no_warning(app, world, clock):
    state = _state(app)
    assert not any("missing" in m.text for m in state.messages)


def test_marks_from_the_previous_key_are_accepted_once_and_rewritten(app, world, clock):
    from appliance.core.licence.state import mark_key, mark_mac

    clock.set(START + 3 * DAY)
    instance = app.extensions["appliance_instance"]
    session_key = instance.path(instance["secret_key_file"]).read_bytes().strip()
    with app.app_context():
        service = licence.service()
        service.clock_row()
        value = (START + 3 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")
        old_mac = mark_mac(mark_key(session_key), service.installation_id(), value)
        LicenceClock.update(high_water=value, high_water_mac=old_mac).where(LicenceClock.id == 1).execute()
        (instance.home / licence.MARK_FILE).unlink(missing_ok=True)
        state = service.state()
    assert not any("edited" in m.text for m in state.messages)
    assert LicenceClock.get_by_id(1).high_water_mac != old_mac  # rewritten under the new key


def test_the_evaluation_start_is_maced(app, world, clock):
    _state(app)
    later = START + 25 * DAY
    LicenceClock.update(evaluation_started_at=later.replace(tzinfo=None)).where(LicenceClock.id == 1).execute()
    clock.set(START + 40 * DAY)  # the real evaluation (from START) has ended
    state = _state(app)
    assert any("evaluation start" in m.text for m in state.messages)
    assert state.status == "evaluation_ended" or "ended" in state.status


def test_deleting_the_clock_row_does_not_restart_the_evaluation(app, world, clock):
    _state(app)
    clock.set(START + 40 * DAY)
    LicenceClock.delete().execute()
    state = _state(app)
    assert state.status != "evaluation"


def test_a_licence_bound_to_another_installation_key_is_refused(app, world, signer, clock):
    from appliance.core.licence.format import LicenceError

    with pytest.raises(LicenceError) as refused:
        _install(app, signer, installation_key="SHA256:someoneelse")
    assert refused.value.reason == "installation"
    own = load_identity(app.extensions["appliance_instance"]).fingerprint()
    lic = _install(app, signer, installation_key=own, licence_id="LIC-TEST-2")
    assert lic.installation_key == own
    assert _state(app).status == "valid"


def test_replacing_the_installation_key_voids_a_key_bound_licence(app, world, signer, clock, tmp_path):
    own = load_identity(app.extensions["appliance_instance"]).fingerprint()
    _install(app, signer, installation_key=own)
    assert _state(app).status == "valid"
    instance = app.extensions["appliance_instance"]
    (instance.home / "keys" / "installation.key").unlink()
    from appliance.core.identity import ensure_identity

    ensure_identity(instance)  # a new key, as an attacker copying the database elsewhere would have
    with running_app(instance) as other, other.app_context():
        state = licence.service().state()
    assert state.status != "valid"
    assert any("bound to the installation key" in m.text for m in state.messages)
