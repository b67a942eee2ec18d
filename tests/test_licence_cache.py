"""The evaluated licence state is kept per process and noticed stale by its generation."""

from __future__ import annotations

from appliance.web.models.licence import LicenceClock
from appliance.web.services.licence import LicenceService
from tests.test_ingest_statements import counting


def test_kept_state_is_rechecked_by_generation_and_age(app, app_context, clock):
    service = LicenceService.for_app(app)
    first = service.cached_state(2)
    with counting() as statements:
        assert service.cached_state(2) is first
    assert statements == [], "within the recheck time the kept state costs no statement"

    # Another process moves the mark: seen once the recheck time has passed, not before.
    LicenceClock.update(high_water_mac="0" * 64).where(LicenceClock.id == 1).execute()
    clock.advance(seconds=1)
    assert service.cached_state(2) is first
    clock.advance(seconds=2)
    second = service.cached_state(2)
    assert second is not first

    # The damaged mark was rewritten while evaluating: that change is seen once more.
    clock.advance(seconds=3)
    second = service.cached_state(2)
    # Nothing changed since: one statement (the generation), the same state.
    clock.advance(seconds=3)
    with counting() as statements:
        assert service.cached_state(2) is second
    assert len(statements) == 1

    # A minute on, the state is evaluated afresh (and the mark moves with it).
    clock.advance(minutes=1)
    assert service.cached_state(2) is not second
    service.forget()
    assert service.cached_state(2) is not second
