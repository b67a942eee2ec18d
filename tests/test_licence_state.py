"""Licence states over time, and the clock high-water mark that a rollback cannot beat."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from appliance.core.licence import state as st
from appliance.core.licence.format import verify_licence
from appliance.core.licence.testing import TestSigner

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
INSTALL = "inst-aaaa"


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


def lic(signer, production=True, **fields):
    fields.setdefault("now", T0)
    return verify_licence(signer.issue(**fields), signer.store(production=production))


def ev(licences, now, **kw):
    kw.setdefault("installed_at", T0)
    kw.setdefault("installation_id", INSTALL)
    return st.evaluate(licences, now=now, **kw)


def test_evaluation_mode_has_small_limits_and_a_stated_end():
    s = ev([], T0 + 10 * DAY)
    assert s.status == st.EVALUATION and s.mode == "evaluation" and s.can_grow
    assert (s.limits.max_tenants, s.limits.max_seats) == (st.EVALUATION_MAX_TENANTS, st.EVALUATION_MAX_SEATS)
    assert s.limits.max_tenants <= 10 and s.limits.max_seats <= 25  # small: production needs a licence
    assert s.ends_at == T0 + 30 * DAY and s.days_left == 20
    assert "2026-01-31" in s.banner.text


def test_evaluation_ends_after_thirty_days():
    s = ev([], T0 + 30 * DAY)
    assert s.status == st.EVALUATION_ENDED and not s.can_grow
    assert "data stays readable" in s.banner.text


def test_valid_licence(signer):
    licence = lic(signer, days=365, max_tenants=9)
    s = ev([licence], T0 + 100 * DAY)
    assert s.status == st.VALID and s.can_grow and s.mode == "licensed"
    assert s.limits.max_tenants == 9
    assert s.days_left == 265
    assert s.banner is None


def test_expiring_soon_from_thirty_days_before(signer):
    licence = lic(signer, days=365)
    assert ev([licence], T0 + 334 * DAY).status == st.VALID
    s = ev([licence], T0 + 335 * DAY)
    assert s.status == st.EXPIRING_SOON and s.can_grow
    assert "expires on 2027-01-01" in s.banner.text


def test_grace_keeps_everything_working_with_a_banner(signer):
    licence = lic(signer, days=365, grace_days=14)
    s = ev([licence], T0 + 366 * DAY)
    assert s.status == st.GRACE and s.can_grow
    assert s.ends_at == licence.grace_ends_at and s.days_left == 13
    assert "grace period" in s.banner.text


def test_degraded_after_grace_forbids_growth_but_says_data_stays(signer):
    licence = lic(signer, days=365, grace_days=14)
    s = ev([licence], T0 + 379 * DAY)
    assert s.status == st.DEGRADED and not s.can_grow
    assert s.limits.max_tenants == licence.max_tenants  # limits still shown
    assert "agents keep answering" in s.banner.text and "readable" in s.banner.text


def test_not_yet_valid_falls_back_to_evaluation_and_says_when(signer):
    future = lic(signer, valid_from=T0 + 60 * DAY, days=400)
    s = ev([future], T0 + 5 * DAY)
    assert s.status == st.NOT_YET_VALID and s.can_grow
    assert s.limits == st.EVALUATION_LIMITS and s.licence is None and s.pending == future
    assert "becomes valid on 2026-03-02" in s.banner.text
    # After the evaluation ends, a not-yet-valid licence grants nothing new.
    late = ev([future], T0 + 40 * DAY)
    assert late.status == st.NOT_YET_VALID and not late.can_grow
    # On its start date it takes over.
    assert ev([future], T0 + 60 * DAY).status == st.VALID


def test_renewal_installed_early_waits_for_its_start(signer):
    old = lic(signer, licence_id="LIC-A", days=365, max_seats=4)
    new = lic(signer, licence_id="LIC-B", replaces="LIC-A", valid_from=T0 + 360 * DAY, days=730, max_seats=40)
    s = ev([old, new], T0 + 340 * DAY)
    assert s.licence.licence_id == "LIC-A" and s.pending.licence_id == "LIC-B"
    assert any("takes effect" in m.text for m in s.messages)
    s2 = ev([old, new], T0 + 361 * DAY)
    assert s2.licence.licence_id == "LIC-B" and s2.limits.max_seats == 40 and s2.status == st.VALID


def test_licence_for_another_installation_is_ignored(signer):
    other = lic(signer, installation_id="inst-other")
    s = ev([other], T0 + DAY)
    assert s.licence is None and s.status == st.EVALUATION
    assert any("inst-other" in m.text and "ignored" in m.text for m in s.messages)
    assert ev([lic(signer, installation_id=INSTALL)], T0 + DAY).status == st.VALID


def test_clock_rollback_is_reported_and_does_not_extend_the_licence(signer):
    licence = lic(signer, days=365, grace_days=0)
    late = T0 + 400 * DAY
    # Someone sets the clock back into the licence period.
    s = ev([licence], T0 + 100 * DAY, high_water=late)
    assert s.clock_rollback and s.status == st.DEGRADED and not s.can_grow
    assert s.effective_now == late
    assert any("behind the latest time" in m.text for m in s.messages)
    # Small skew between hosts is not a rollback.
    assert not ev([licence], T0 + 100 * DAY, high_water=T0 + 100 * DAY + timedelta(minutes=5)).clock_rollback


def test_rollback_does_not_extend_evaluation():
    s = ev([], T0 + 5 * DAY, high_water=T0 + 45 * DAY)
    assert s.status == st.EVALUATION_ENDED and s.clock_rollback


def test_non_production_root_is_flagged(signer):
    s = ev([lic(signer, production=False)], T0 + DAY)
    assert s.non_production
    assert "non-production trust root" in s.banner.text
    assert not ev([lic(signer)], T0 + DAY).non_production


def test_unlicensed_profile_is_warned_not_enforced(signer):
    s = ev([lic(signer, profiles=["minimal"])], T0 + DAY, profile="maximal")
    assert s.can_grow
    assert any("'maximal' profile" in m.text for m in s.messages)


def test_state_to_dict_is_json(signer):
    data = ev([lic(signer)], T0 + DAY).to_dict()
    assert json.loads(json.dumps(data))["licence"]["licence_id"] == "LIC-TEST-1"


# -- the clock guard -----------------------------------------------------------


class MemoryMark:
    name = "database"

    def __init__(self):
        self.record = None
        self.saves = 0

    def load(self):
        return self.record

    def save(self, value, mac):
        self.record = (value, mac)
        self.saves += 1


def guard(tmp_path, db=None, key=b"k" * 32):
    db = db or MemoryMark()
    file = st.FileMark(tmp_path / "clock-mark.json")
    return st.ClockGuard([db, file], st.mark_key(key), INSTALL), db, file


def test_mark_advances_and_is_kept_in_both_places(tmp_path):
    g, db, file = guard(tmp_path)
    first = g.observe(T0)
    assert first.high_water is None and not first.problems
    assert db.record and file.load() == db.record
    assert g.observe(T0 + DAY).high_water == T0
    assert g.observe(T0 + 2 * DAY).high_water == T0 + DAY
    saves = db.saves
    g.observe(T0 + 2 * DAY + timedelta(seconds=10))  # not every request writes
    assert db.saves == saves


def test_mark_survives_clock_going_back(tmp_path):
    g, _db, _file = guard(tmp_path)
    g.observe(T0 + 50 * DAY)
    reading = g.observe(T0)
    assert reading.high_water == T0 + 50 * DAY
    s = ev([], T0, high_water=reading.high_water)
    assert s.clock_rollback and s.status == st.EVALUATION_ENDED


def test_edited_file_mark_is_detected_and_the_database_copy_wins(tmp_path):
    g, _db, file = guard(tmp_path)
    g.observe(T0 + 50 * DAY)
    data = json.loads(file.path.read_text())
    data["high_water"] = "2026-01-02T00:00:00Z"  # wound back, MAC left as it was
    file.path.write_text(json.dumps(data))
    reading = g.observe(T0 + DAY)
    assert reading.high_water == T0 + 50 * DAY
    assert any("was edited or damaged" in p.text and "file" in p.text for p in reading.problems)
    # Repaired from the verified copy.
    assert not g.observe(T0 + DAY).problems


def test_both_marks_edited_is_reported(tmp_path):
    g, db, file = guard(tmp_path)
    g.observe(T0 + 50 * DAY)
    db.record = ("2026-01-01T00:00:00Z", db.record[1])
    file.path.write_text("not json")
    reading = g.observe(T0)
    assert reading.high_water is None
    assert len(reading.problems) == 2


def test_mark_from_another_key_or_installation_does_not_verify(tmp_path):
    g, db, _ = guard(tmp_path)
    g.observe(T0 + 50 * DAY)
    other = st.ClockGuard([db], st.mark_key(b"x" * 32), INSTALL)
    assert other.observe(T0, persist=False).problems
    moved = st.ClockGuard([db], st.mark_key(b"k" * 32), "inst-other")
    assert moved.observe(T0, persist=False).problems
