"""A web-chat visitor's claimed identity is unverified: it never reaches an existing
contact unless the site signs it (HMAC with the channel's secret) or an agent merges."""

from __future__ import annotations

import json

from appliance.web.models.audit import AuditEvent
from appliance.web.models.contact_center import Contact, Conversation
from appliance.web.services.visitors import sign_identity
from tests.helpers import START, csrf_token, login

LATER = int(START.timestamp()) + 3600


def _post(client, channel, **body):
    return client.post(f"/widget/{channel.public_key}/messages", json={"body": "hello", **body})


def test_typing_a_customers_email_does_not_reach_their_contact(client, world):
    channel, customer = world.objects["A"]["channel"], world.objects["A"]["contact"]
    answer = _post(client, channel, name="Attacker", email=customer.email)
    assert answer.status_code == 201
    conv = Conversation.get_by_id(answer.get_json()["conversation_id"])
    assert conv.contact_id != customer.id
    visitor = Contact.get_by_id(conv.contact_id)
    assert visitor.verified is False and visitor.email == customer.email  # kept, as a claim
    # Nor does a later webhook or API match land on the visitor's claim.
    assert Contact.get_by_id(customer.id).verified is True


def test_a_signed_identity_reaches_the_customer(client, world):
    channel, customer = world.objects["A"]["channel"], world.objects["A"]["contact"]
    token = sign_identity(channel.secret, email=customer.email, name="Logged in", exp=LATER)
    answer = _post(client, channel, identity=token)
    assert answer.status_code == 201
    assert Conversation.get_by_id(answer.get_json()["conversation_id"]).contact_id == customer.id


def test_forged_expired_or_foreign_identity_tokens_are_403(client, world):
    channel, customer = world.objects["A"]["channel"], world.objects["A"]["contact"]
    other = world.objects["B"]["channel"]
    before = Conversation.select().count()
    for token in (
        sign_identity("not-the-secret", email=customer.email, exp=LATER),
        sign_identity(channel.secret, email=customer.email, exp=int(START.timestamp()) - 1),
        sign_identity(other.secret, email=customer.email, exp=LATER),
        "garbage", "a.b", "é.é",
    ):
        answer = _post(client, channel, identity=token)
        assert answer.status_code == 403, token
        assert "identity" in answer.get_json()["message"]
    assert Conversation.select().count() == before


def test_an_agent_merges_a_visitor_through_the_api_and_it_is_audited(client, world):
    channel, customer = world.objects["A"]["channel"], world.objects["A"]["contact"]
    conv_id = _post(client, channel, email="typed@x.test").get_json()["conversation_id"]
    visitor = Contact.get_by_id(Conversation.get_by_id(conv_id).contact_id)
    headers = world.headers("A", "agent")
    # A verified contact cannot be merged away; a contact of another tenant is not a target.
    assert client.post(f"/api/v1/contacts/{customer.id}/merge", headers=headers,
                       json={"into": visitor.id}).status_code == 409
    assert client.post(f"/api/v1/contacts/{visitor.id}/merge", headers=headers,
                       json={"into": world.objects["B"]["contact"].id}).status_code == 422
    answer = client.post(f"/api/v1/contacts/{visitor.id}/merge", headers=headers, json={"into": customer.id})
    assert answer.status_code == 200 and answer.get_json()["id"] == customer.id
    assert Conversation.get_by_id(conv_id).contact_id == customer.id
    assert Contact.get_or_none(Contact.id == visitor.id) is None
    event = AuditEvent.get(AuditEvent.action == "contact.merge")
    assert event.actor_id == world.users[("A", "agent")].id
    assert json.loads(event.details) == {"conversations": 1, "source": visitor.id}


def test_an_agent_merges_a_visitor_in_the_ui(app, world):
    widget = app.test_client()
    channel, customer = world.objects["A"]["channel"], world.objects["A"]["contact"]
    conv_id = _post(widget, channel, email=customer.email).get_json()["conversation_id"]
    visitor_id = Conversation.get_by_id(conv_id).contact_id
    client = app.test_client()
    assert login(client, world.email("A", "agent")).status_code == 302
    tenant = world.tenants["A"]
    page = client.get(f"/t/{tenant.id}/contacts/{visitor_id}").get_data(as_text=True)
    assert "Unverified visitor" in page
    token = csrf_token(client, f"/t/{tenant.id}/contacts/{visitor_id}")
    done = client.post(f"/t/{tenant.id}/contacts/{visitor_id}/merge", data={"into": str(customer.id),
                                                                          "csrf_token": token})
    assert done.status_code == 302
    assert Conversation.get_by_id(conv_id).contact_id == customer.id
    assert AuditEvent.select().where(AuditEvent.action == "contact.merge").count() == 1
