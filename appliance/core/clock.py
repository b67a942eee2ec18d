"""The time of day, read in one place.

Licence states, the clock high-water mark, daily usage reports and their
retries all turn on what time it is. Every read of the wall clock in the
appliance goes through :func:`now`, so a test can own time by replacing this
one function (the test suite's ``clock`` fixture does) instead of chasing
copies of ``datetime.now`` through the code.

Call it as ``clock.now()`` after ``from appliance.core import clock``: a name
imported with ``from appliance.core.clock import now`` keeps the real clock
when a test replaces it.

Durations measured on this host (timeouts, cache lifetimes) use
``time.monotonic`` instead: they are not a time of day.
"""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.UTC)


def naive_now() -> dt.datetime:
    """Naive UTC now, as the databases store it (SQLite and PostgreSQL compare naive values alike)."""
    return now().replace(tzinfo=None)
