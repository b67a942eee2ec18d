"""Card numbers in messages are masked for agents where a tenant asks; allowed roles may
reveal them, and every reveal is audited."""

from __future__ import annotations

import pytest

from appliance.web.models.audit import AuditEvent
from appliance.web.services import conversations
from appliance.web.services.pan import mask
from tests.helpers import login

CARD = "4111 1111 1111 1111"


def test_mask_keeps_the_last_four_and_leaves_other_numbers():
    assert mask(f"my card is {CARD} thanks") == "my card is •••• 1111 thanks"
    assert mask("4111-1111-1111-1111") == "•••• 1111"
    assert mask("order 4111111111111112") == "order 4111111111111112"  # fails Luhn
    assert mask("call +49 30 1234567") == "call +49 30 1234567"


@pytest.fixture
def masked(db_url, app, world, client):
    if not db_url.startswith("sqlite"):
        pytest.skip("masking does not depend on the database")
    a = world.tenants["A"]
    answer = client.patch(f"/api/v1/tenants/{a.id}", headers=world.headers("A", "admin"),
                          json={"mask_card_numbers": True})
    assert answer.status_code == 200 and answer.get_json()["mask_card_numbers"] is True
    conv = world.objects["A1"]["conversation"]  # a sub-account: the account's choice applies
    conversations.add_message(conv, "in", f"my card is {CARD}")
    return conv


def test_api_masks_for_agents_and_reveals_for_supervisors_audited(masked, client, world):
    url = f"/api/v1/conversations/{masked.id}/messages"
    agent = client.get(url, headers=world.headers("A1", "agent")).get_json()["items"]
    assert "•••• 1111" in agent[-1]["body"] and CARD not in agent[-1]["body"]
    assert client.get(url + "?unmasked=true", headers=world.headers("A1", "agent")).status_code == 403
    full = client.get(url + "?unmasked=true", headers=world.headers("A1", "supervisor")).get_json()["items"]
    assert CARD in full[-1]["body"]
    event = AuditEvent.get(AuditEvent.action == "message.reveal_card_numbers")
    assert event.actor_id == world.users[("A1", "supervisor")].id and event.target == f"conversation:{masked.id}"


def test_ui_masks_for_agents_and_reveals_for_supervisors_audited(masked, app, world):
    page = f"/t/{world.tenants['A1'].id}/conversations/{masked.id}"
    agent = app.test_client()
    assert login(agent, world.email("A1", "agent")).status_code == 302
    text = agent.get(page).get_data(as_text=True)
    assert "•••• 1111" in text and CARD not in text
    assert CARD not in agent.get(page + "?reveal=1").get_data(as_text=True)
    supervisor = app.test_client()
    assert login(supervisor, world.email("A1", "supervisor")).status_code == 302
    assert "Show them in full" in supervisor.get(page).get_data(as_text=True)
    assert CARD in supervisor.get(page + "?reveal=1").get_data(as_text=True)
    assert AuditEvent.select().where(AuditEvent.action == "message.reveal_card_numbers").count() == 1


def test_tenants_without_masking_see_full_numbers(db_url, client, world):
    conv = world.objects["B"]["conversation"]
    conversations.add_message(conv, "in", f"card {CARD}")
    items = client.get(f"/api/v1/conversations/{conv.id}/messages", headers=world.headers("B", "agent")).get_json()
    assert CARD in items["items"][-1]["body"]
