"""Demo data: a 3-level tenant tree, users of each role, channels and conversations."""

from __future__ import annotations

import random

from appliance.web.db import database_proxy
from appliance.web.models.tenancy import Membership
from appliance.web.services import catalogue, conversations, labels, tenants

DEMO_PASSWORD = "demo-password-1"

FIRST = ["Anna", "Boris", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kenji", "Lena"]
LAST = ["Ivanova", "Schmidt", "Tanaka", "Garcia", "Novak", "Smith", "Kowalski", "Rossi"]
OPENERS = [
    "Hello, my card was blocked after a payment abroad.",
    "Can I change the tariff on my mobile plan?",
    "I did not receive the SMS code to log in.",
    "Where can I find my last invoice?",
    "Your app says 'service unavailable' since this morning.",
    "I want to close my savings account.",
]
REPLIES = [
    "Thanks for reaching out, I am looking into it now.",
    "Could you confirm the last four digits of your card?",
    "Done: you should see the change within an hour.",
    "I have forwarded this to our specialists.",
]


def seed(count: int = 300, rng: random.Random | None = None) -> list[tuple[str, str]]:
    """Create the demo tree and data; returns (login, description) pairs to print."""
    rng = rng or random.Random(7)
    logins: list[tuple[str, str]] = []

    def user(tenant, email, name, role, shared=False):
        member = tenants.invite_member(tenant, email=email, name=name, password=DEMO_PASSWORD,
                                       role=role, shared=shared)
        logins.append((email, f"{role} of {tenant.name} (level {tenant.level})"))
        return member

    with database_proxy.atomic():
        provider = tenants.create_provider("Demo Provider")
        user(provider, "provider.admin@demo.test", "Pia Provider", "admin")
        bank = tenants.create_child(provider, "Horizon Bank", "enterprise")
        telco = tenants.create_child(provider, "Nordtel", "customer")
        reseller = tenants.create_child(provider, "Channel Partners Ltd", "reseller")
        cards = tenants.create_child(bank, "Horizon Cards", "business_unit")
        retail = tenants.create_child(bank, "Horizon Retail", "brand")
        mobile = tenants.create_child(telco, "Nordtel Mobile", "country_team")
        user(bank, "bank.admin@demo.test", "Bela Banker", "admin")
        user(bank, "bank.supervisor@demo.test", "Sam Supervisor", "supervisor")
        user(bank, "bank.agent@demo.test", "Ada Agent", "agent", shared=True)
        user(cards, "cards.agent@demo.test", "Carl Cards", "agent")
        user(retail, "retail.agent@demo.test", "Rita Retail", "agent")
        user(telco, "telco.admin@demo.test", "Tom Telco", "admin")
        user(mobile, "mobile.agent@demo.test", "Mona Mobile", "agent")
        user(reseller, "reseller.admin@demo.test", "Rex Reseller", "admin")
        channels = {}
        for tenant in (bank, cards, retail, telco, mobile):
            channels[tenant.id] = [
                catalogue.create_channel(tenant, kind="webchat", name=f"{tenant.name} web chat"),
                catalogue.create_channel(tenant, kind="webhook", name=f"{tenant.name} messenger"),
            ]
        catalogue.create_channel(bank, kind="email", name="Horizon shared mailbox", shared=True)
        catalogue.create_article(bank, title="Blocked cards: what to check", shared=True, category="Cards",
                                 body="1. Ask for the **last payment**.\n2. Check the fraud flag.\n"
                                      "3. Unblock after the OTP.")
        catalogue.create_article(bank, title="Internal escalation list", body="Only for bank staff.")
        catalogue.create_canned(bank, shortcut="hello", title="Greeting", shared=True,
                                body="Hello {{contact.first_name}}! This is {{agent.first_name}}: "
                                     "how can I help you today?")
        demo_labels = [labels.create_label(bank, name="VIP", color="#aa3300", shared=True),
                       labels.create_label(bank, name="Fraud check", color="#953800", shared=True),
                       labels.create_label(bank, name="Billing", color="#0969da")]
        targets = [bank, cards, retail, telco, mobile]
        for i in range(count):
            tenant = targets[i % len(targets)]
            channel = rng.choice(channels[tenant.id])
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            conv = conversations_ingest(channel, tenant, name, i, rng)
            if i % 3 == 0:
                assignee = conv.assignee_id or _any_agent(tenant)
                conversations.add_message(conv, "out", rng.choice(REPLIES), author=assignee)
            usable = [lb for lb in demo_labels if labels.usable_label(tenant, lb.id)]
            if i % 4 == 0 and usable:  # the bank's labels reach the bank and its sub-accounts only
                labels.add(conv, rng.choice(usable).id)
            if i % 5 == 0:
                conversations.set_priority(conv, rng.choice(("low", "high", "urgent")))
            roll = rng.random()  # about a third resolved, a sixth pending, the rest open
            if roll < 0.33:
                conversations.set_status(conv, "resolved")
            elif roll < 0.5:
                conversations.set_status(conv, "pending")
    return logins


def conversations_ingest(channel, tenant, name, i, rng):
    return conversations.ingest_inbound(
        channel,
        tenant=tenant,
        body=rng.choice(OPENERS),
        name=name,
        email=f"customer{i}@example.test",
        phone=f"+4915{rng.randrange(10**7, 10**8)}",
    )


def _any_agent(tenant):
    member = Membership.select().where(Membership.tenant == tenant.id).first()
    return member.user_id if member else None
