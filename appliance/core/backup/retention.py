"""Which archives to keep: the last ``retention_days``, the first of each month for the archive
period, and always the newest good one (so pruning can never leave an instance without a backup)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    name: str
    created_at: dt.datetime  # aware UTC
    good: bool  # the manifest verified under this instance's key


def plan_prune(candidates: list[Candidate], now: dt.datetime, retention_days: int,
               monthly_months: int = 0) -> tuple[list[Candidate], list[Candidate]]:
    """Split ``candidates`` into (keep, delete)."""
    keep: set[str] = set()
    horizon = now - dt.timedelta(days=retention_days)
    for c in candidates:
        if c.created_at >= horizon:
            keep.add(c.name)
    if monthly_months > 0:
        first_of_month: dict[tuple[int, int], Candidate] = {}
        for c in sorted((c for c in candidates if c.good), key=lambda c: c.created_at):
            first_of_month.setdefault((c.created_at.year, c.created_at.month), c)
        oldest = (now.year * 12 + now.month - 1) - monthly_months
        for (year, month), c in first_of_month.items():
            if year * 12 + month - 1 > oldest:
                keep.add(c.name)
    good = [c for c in candidates if c.good]
    if good:
        keep.add(max(good, key=lambda c: c.created_at).name)
    kept = [c for c in candidates if c.name in keep]
    deleted = [c for c in candidates if c.name not in keep]
    return kept, deleted
