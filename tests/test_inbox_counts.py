"""Inbox tab counts are exact up to the cap, then say "999+" (bounded cost)."""

from __future__ import annotations

from appliance.web.models.contact_center import Conversation
from appliance.web.services import conversations


def test_counts_exact_then_capped(app, world, monkeypatch):
    a = world.tenants["A"]
    assert conversations.status_counts(a) == {"open": 1, "pending": 0, "resolved": 0}
    assert conversations.status_counts(a, include_subaccounts=True)["open"] == 3  # A, A1, A2
    monkeypatch.setattr(conversations, "COUNT_CAP", 4)
    conv = world.objects["A"]["conversation"]
    rows = [{k: getattr(conv, k) for k in ("tenant", "channel", "contact", "status")} for _ in range(6)]
    Conversation.insert_many(Conversation.prepare_rows(rows)).execute()
    assert conversations.status_counts(a)["open"] == 5
    assert conversations.count_label(5) == "4+" and conversations.count_label(4) == "4"
