"""Contracts, future-dated changes and invoices against a real database (SQLite and PostgreSQL).

The tenant tree is tests/helpers.py's world (P > A > A1, A2; P > B > B1). A licence signed by a
throwaway key allows 40 seats and the programs below. Time is the test's own clock.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from appliance.core.licence.testing import TestSigner
from appliance.web.business import catalogue, contracts, invoicing, schedule
from appliance.web.business.models import Contract, Invoice, InvoiceCounter, Notification, ScheduledChange
from appliance.web.business.reminders import send_reminders
from appliance.web.models.licence import TenantProgram
from appliance.web.services import ServiceError
from appliance.web.services import licence as licence_service
from tests.helpers import START, build_world, make_instance, running_app, trust_test_signer

DAY = dt.timedelta(days=1)
FEB = dt.date(2031, 2, 1)
PROGRAMS = ["webchat", "email", "messengers", "api"]


@pytest.fixture(scope="module")
def signer():
    return TestSigner()


@pytest.fixture
def app(tmp_path, monkeypatch, signer, db_url):
    trust_test_signer(signer, tmp_path / "trust", monkeypatch)
    with running_app(make_instance(tmp_path / "home", db_url)) as app:
        with app.app_context():
            licence_service.service().install(signer.issue(now=START, max_tenants=20, max_seats=40,
                                                           programs=PROGRAMS, days=3650))
        yield app


@pytest.fixture
def ctx(app):
    with app.app_context():
        world = build_world()
        catalogue.publish("webchat", dt.date(2030, 1, 1), monthly_fee_minor=2000, setup_fee_minor=5000,
                          included_conversations=100, overage_conversation_minor=15)
        catalogue.publish("email", dt.date(2030, 1, 1), per_seat=False, monthly_fee_minor=9900)
        yield world


def test_contract_prices_are_frozen_when_the_catalogue_changes(ctx):
    account = ctx.tenants["A"]
    contract = contracts.create(account, [("webchat", 10)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    catalogue.publish("webchat", FEB + 10 * DAY, monthly_fee_minor=3000)
    assert catalogue.policy_on("webchat", FEB + 20 * DAY).monthly_fee_minor == 3000
    assert contract.lines.get().monthly_fee_minor == 2000  # the contract keeps its price


def test_a_contract_cannot_exceed_the_licence_and_says_which_limit(ctx):
    with pytest.raises(licence_service.LicenceLimitError) as seats:
        contract = contracts.create(ctx.tenants["A"], [("webchat", 41)], starts_on=FEB, ends_on=FEB + 30 * DAY)
        contracts.set_status(contract, "active", on=FEB)
    assert seats.value.limit == "max_seats" and "41" in str(seats.value) and "40" in str(seats.value)
    catalogue.publish("api", dt.date(2030, 1, 1), monthly_fee_minor=100)
    first = contracts.create(ctx.tenants["A"], [("webchat", 30)], starts_on=FEB, ends_on=FEB + 30 * DAY)
    contracts.set_status(first, "active", on=FEB)
    second = contracts.create(ctx.tenants["B"], [("webchat", 11)], starts_on=FEB, ends_on=FEB + 30 * DAY)
    with pytest.raises(licence_service.LicenceLimitError, match="41 operator seats"):
        contracts.set_status(second, "active", on=FEB)


def test_activation_assigns_the_programs_to_the_account_and_its_sub_accounts(ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5), ("email", 1)], starts_on=FEB, ends_on=FEB + 90 * DAY)
    contracts.set_status(contract, "active", on=FEB)
    assert {r.program for r in TenantProgram.select().where(TenantProgram.tenant == ctx.tenants["A"].id)} == {
        "webchat", "email"}
    contracts.set_status(Contract.get_by_id(contract.id), "ended", on=FEB + 90 * DAY)
    assert not TenantProgram.select().where(TenantProgram.tenant == ctx.tenants["A"].id).exists()


def test_a_future_dated_change_applies_on_its_day_exactly_once(ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(contract, "active", on=FEB)
    march = dt.date(2031, 3, 1)
    change = schedule.schedule(ctx.tenants["A"], "set_seats", march, contract=contract, program="webchat", value="12")
    assert schedule.apply_due(march - DAY) == 0
    assert contract.lines.get().seats == 5
    assert schedule.apply_due(march) == 1
    assert schedule.apply_due(march) == 0  # a second round (or host) finds nothing left
    assert contract.lines.get().seats == 12
    done = ScheduledChange.get_by_id(change.id)
    assert done.state == "applied" and done.outcome == "webchat: 12 seats"


def test_a_change_missed_during_an_outage_applies_late_once_and_records_when(ctx, clock):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    change = schedule.schedule(ctx.tenants["A"], "set_status", FEB, contract=contract, value="active")
    clock.set(dt.datetime(2031, 2, 4, 8, 0, tzinfo=dt.UTC))  # the worker was down for three days
    assert schedule.apply_due(dt.date(2031, 2, 4)) == 1
    done = ScheduledChange.get_by_id(change.id)
    assert done.applied_at == dt.datetime(2031, 2, 4, 8, 0)
    assert Contract.get_by_id(contract.id).status == "active"
    assert schedule.apply_due(dt.date(2031, 2, 5)) == 0


def test_a_refused_change_is_recorded_failed_and_changes_nothing(ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(contract, "active", on=FEB)
    change = schedule.schedule(ctx.tenants["A"], "set_seats", FEB, contract=contract, program="webchat", value="99")
    schedule.apply_due(FEB)
    failed = ScheduledChange.get_by_id(change.id)
    assert failed.state == "failed" and "max_seats" in failed.outcome
    assert contract.lines.get().seats == 5


def test_cancelled_changes_never_apply(ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    change = schedule.schedule(ctx.tenants["A"], "set_status", FEB, contract=contract, value="active")
    assert [c.id for c in schedule.pending(ctx.tenants["A"])] == [change.id]
    assert schedule.cancel(change)
    assert schedule.apply_due(FEB) == 0 and not schedule.cancel(change)


def test_bad_changes_are_refused_naming_the_field(ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    with pytest.raises(ServiceError, match="value"):
        schedule.schedule(ctx.tenants["A"], "set_seats", FEB, contract=contract, program="webchat", value="many")
    with pytest.raises(ServiceError, match="another account"):
        schedule.schedule(ctx.tenants["B"], "set_status", FEB, contract=contract, value="ended")


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_workers_racing_apply_a_change_once(app, ctx):
    contract = contracts.create(ctx.tenants["A"], [("webchat", 5)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(contract, "active", on=FEB)
    changes = [schedule.schedule(ctx.tenants["A"], "add_program" if i % 2 else "set_seats", FEB, contract=contract,
                                 program="email" if i % 2 else "webchat", value=None if i % 2 else str(6 + i))
               for i in range(2)]
    database = app.extensions["database"]
    barrier, applied = threading.Barrier(2), []

    def worker():
        with app.app_context(), database.connection_context():
            barrier.wait()
            applied.append(sum(schedule.apply_one(c.id) for c in changes))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(applied) in ([0, 2], [1, 1]) and sum(applied) == 2
    assert TenantProgram.select().where(TenantProgram.tenant == ctx.tenants["A"].id,
                                        TenantProgram.program == "email").count() == 1


def test_invoice_prorates_a_mid_month_change_and_numbers_run_without_gaps(ctx, app):
    settings = app.extensions["appliance_instance"].settings["business"]
    a, b = ctx.tenants["A"], ctx.tenants["B"]
    b.partner_level = "gold"
    b.save()
    first = contracts.create(a, [("webchat", 10)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(first, "active", on=FEB)
    contracts.set_seats(first, "webchat", 15, on=dt.date(2031, 2, 15))
    second = contracts.create(b, [("email", 1)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(second, "active", on=FEB)
    made = invoicing.run(FEB, dt.date(2031, 3, 1), currency=settings["currency"],
                         discounts=settings["partner_discounts"])
    assert invoicing.run(FEB, dt.date(2031, 3, 1), currency="EUR", discounts={}) == []  # re-run: nothing new
    by_account = {inv.account_id: inv for inv in made}
    # A: setup 50.00 + 10 seats x 20.00 x 14/28 + 15 x 20.00 x 14/28 = 300.00
    assert by_account[a.id].total_minor == 5000 + 10000 + 15000
    # B: flat 99.00 less the gold partner's 10 %
    assert by_account[b.id].total_minor == 9900 - 990
    issued = [invoicing.issue(inv) for inv in made]
    assert sorted(i.number for i in issued) == [1, 2]
    note = invoicing.credit_note(issued[0], 1000, "goodwill")
    assert note.number == 3 and note.total_minor == -1000
    with pytest.raises(ServiceError, match="what is left"):
        invoicing.credit_note(issued[0], issued[0].total_minor, "too much")
    assert InvoiceCounter.get_by_id(1).last_number == 3
    # Setup fees are billed once: March has none.
    march = invoicing.run(dt.date(2031, 3, 1), dt.date(2031, 4, 1), currency="EUR", discounts={})
    assert {inv.account_id: inv.total_minor for inv in march}[a.id] == 15 * 2000


def test_statement_balances_invoices_credit_notes_and_payments(ctx, clock):
    a = ctx.tenants["A"]
    contract = contracts.create(a, [("webchat", 10)], starts_on=FEB, ends_on=FEB + 365 * DAY)
    contracts.set_status(contract, "active", on=FEB)
    clock.set(dt.datetime(2031, 3, 1, 6, 0, tzinfo=dt.UTC))
    (feb,) = [i for i in invoicing.run(FEB, dt.date(2031, 3, 1), currency="EUR", discounts={}) if i.account_id == a.id]
    feb = invoicing.issue(feb)
    invoicing.credit_note(feb, 500, "outage")
    invoicing.record_payment(a, 20000, dt.date(2031, 3, 10), "SEPA 2031-03-10 A")
    with pytest.raises(ServiceError, match="reference"):
        invoicing.record_payment(a, 100, dt.date(2031, 3, 10), " ")
    st = invoicing.statement(a, dt.date(2031, 3, 1), dt.date(2031, 4, 1))
    assert st.opening == 0
    assert [e[2] for e in st.entries] == [25000, -500, -20000]
    assert st.closing == 4500


def test_renewal_reminders_go_once_at_each_offset(ctx):
    a = ctx.tenants["A"]
    contract = contracts.create(a, [("webchat", 2)], starts_on=FEB, ends_on=dt.date(2031, 12, 31), renewal="auto")
    contracts.set_status(contract, "active", on=FEB)
    offsets = [90, 30, 7]
    assert send_reminders(dt.date(2031, 9, 1), offsets) == 0
    assert send_reminders(dt.date(2031, 10, 2), offsets) == 2  # 90 days before: the account and the provider
    assert send_reminders(dt.date(2031, 10, 3), offsets) == 0
    assert send_reminders(dt.date(2031, 12, 30), offsets) == 2  # a late worker skips to the nearest offset
    texts = {n.text for n in Notification.select().where(Notification.tenant == a.id)}
    assert texts == {"The contract of Tenant A ends on 2031-12-31 (renews automatically)."}
    assert Invoice.select().count() == 0


def test_a_reseller_cannot_order_past_its_credit_limit(ctx):
    from decimal import Decimal

    b = ctx.tenants["B"]
    b.kind, b.credit_limit = "reseller", Decimal("500.00")
    b.save()
    first = contracts.create(b, [("webchat", 20)], starts_on=FEB, ends_on=FEB + 365 * DAY)  # 400.00 a month
    contracts.set_status(first, "active", on=FEB)
    second = contracts.create(b, [("email", 1)], starts_on=FEB, ends_on=FEB + 365 * DAY)  # 99.00 more: 499.00
    contracts.set_status(second, "active", on=FEB)
    invoicing.record_payment(b, 1, FEB, "prepay")  # owes -0.01: still inside
    (invoice,) = [i for i in invoicing.run(FEB, dt.date(2031, 3, 1), currency="EUR", discounts={})
                  if i.account_id == b.id]
    invoicing.issue(invoice)  # now owes the February invoice too
    third = contracts.create(b, [("webchat", 1)], starts_on=FEB, ends_on=FEB + 30 * DAY)
    with pytest.raises(ServiceError) as refused:
        contracts.set_status(third, "active", on=FEB)
    message = str(refused.value)
    assert "credit limit of 500.00" in message and "owes" in message and "Record a payment" in message
    assert Contract.get_by_id(third.id).status == "draft"
