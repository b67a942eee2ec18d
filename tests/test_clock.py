"""The appliance reads the time of day in one place, and the tests' clock owns it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import appliance

PACKAGE = Path(appliance.__file__).parent
CLOCK_MODULE = PACKAGE / "core" / "clock.py"
# Reads of the wall clock that would slip past appliance.core.clock (and so past a test's clock).
WALL_CLOCK = re.compile(r"\b(datetime\.now|datetime\.utcnow|date\.today|time\.time|time\.gmtime|time\.localtime)\(")


def test_only_the_clock_module_reads_the_wall_clock():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == CLOCK_MODULE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if WALL_CLOCK.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "read the time through appliance.core.clock.now():\n" + "\n".join(offenders)


def test_the_fixture_clock_is_what_every_layer_sees(clock):
    from appliance.core.licence import state
    from appliance.core.sync.client import SyncClient
    from appliance.core.sync.report import utc_timestamp
    from appliance.vendor_tools.receiver import models as receiver_models
    from appliance.web.models import base
    from appliance.web.services import licence

    when = clock.set(dt.datetime(2041, 2, 28, 23, 59, 59, tzinfo=dt.UTC))
    naive = when.replace(tzinfo=None)
    assert licence.utcnow() == when and state.utcnow() == when
    assert base.utcnow() == naive and receiver_models.utcnow() == naive
    assert utc_timestamp() == "2041-02-28T23:59:59Z"
    assert SyncClient(settings=None, outbox=None).clock() == naive  # its default clock
    assert clock.advance(seconds=1) == dt.datetime(2041, 3, 1, tzinfo=dt.UTC)
    assert base.utcnow() == dt.datetime(2041, 3, 1)
