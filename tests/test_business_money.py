"""Billing arithmetic, checked on many generated cases (Hypothesis) rather than a few examples."""

import datetime as dt
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.web.business.billing import Segment, Terms, draft_invoice, month_bounds, prorate
from appliance.web.business.money import MoneyError, check, format_amount, percent_off, split

amounts = st.integers(min_value=0, max_value=10**9)
signed_amounts = st.integers(min_value=-(10**9), max_value=10**9)
FAST = settings(max_examples=300, deadline=None)


@FAST
@given(signed_amounts, st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40)
       .filter(lambda ws: sum(ws) > 0))
def test_split_parts_sum_to_the_whole_and_stay_within_a_cent_of_exact(total, weights):
    parts = split(total, weights)
    assert sum(parts) == total
    assert all(isinstance(p, int) for p in parts)
    whole = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part * whole - total * weight) < whole  # off by less than one minor unit


@st.composite
def months_and_cuts(draw):
    year = draw(st.integers(min_value=2024, max_value=2040))
    month = draw(st.integers(min_value=1, max_value=12))
    start, end = month_bounds(dt.date(year, month, 1))
    days = (end - start).days
    cuts = sorted(set(draw(st.lists(st.integers(min_value=1, max_value=days - 1), max_size=10))))
    bounds = [start] + [start + dt.timedelta(days=c) for c in cuts] + [end]
    return start, end, bounds


@FAST
@given(amounts, st.integers(min_value=1, max_value=500), months_and_cuts())
def test_proration_of_an_unchanged_line_sums_to_the_full_period(fee, seats, period):
    start, end, bounds = period
    segments = [Segment(a, b, seats) for a, b in pairwise(bounds)]
    parts = prorate(fee, segments, start, end)
    assert sum(parts) == fee * seats
    assert all(p >= 0 for p in parts)


@FAST
@given(amounts, months_and_cuts(), st.data())
def test_proration_with_changing_seats_is_the_exact_day_weighted_fee(fee, period, data):
    start, end, bounds = period
    segments = [Segment(a, b, data.draw(st.integers(min_value=0, max_value=200)))
                for a, b in pairwise(bounds)]
    parts = prorate(fee, segments, start, end)
    held = sum(s.quantity * s.days for s in segments)
    days = (end - start).days
    assert abs(sum(parts) * days - fee * held) <= days // 2 + 1  # one rounding of the whole line


terms_strategy = st.builds(
    Terms,
    program=st.sampled_from(["webchat", "messengers", "email"]),
    monthly_fee=amounts, per_seat=st.booleans(), setup_fee=amounts,
    included_conversations=st.integers(min_value=0, max_value=10**5),
    included_messages=st.integers(min_value=0, max_value=10**6),
    overage_conversation=st.integers(min_value=0, max_value=10**4),
    overage_message=st.integers(min_value=0, max_value=10**3),
)


@FAST
@given(st.lists(terms_strategy, min_size=1, max_size=3, unique_by=lambda t: t.program), months_and_cuts(),
       st.dictionaries(st.integers(min_value=1, max_value=5),
                       st.tuples(st.integers(min_value=0, max_value=10**5), st.integers(min_value=0, max_value=10**6)),
                       max_size=5),
       st.integers(min_value=0, max_value=100), st.data())
def test_an_invoice_is_never_negative_and_its_total_is_the_sum_of_its_lines(terms, period, usage, discount, data):
    start, end, bounds = period
    by_program = {t.program: t for t in terms}
    segments = {}
    for tenant_id in (1, 2, 3):
        for program in by_program:
            segments[(tenant_id, program)] = [
                Segment(a, b, data.draw(st.integers(min_value=0, max_value=50)))
                for a, b in pairwise(bounds)]
    setup_due = set(data.draw(st.lists(st.sampled_from(sorted(by_program)), unique=True)))
    draft = draft_invoice(1, start, end, terms=by_program, segments=segments, usage=usage,
                          setup_due=setup_due, discount_percent=discount)
    assert draft.total == sum(line.amount for line in draft.lines)
    assert draft.total >= 0
    for line in draft.lines:
        assert type(line.amount) is int and type(line.unit_price) is int and type(line.quantity) is int


def test_money_refuses_floats_and_bools_naming_the_field():
    with pytest.raises(MoneyError, match="monthly_fee"):
        Terms(program="webchat", monthly_fee=19.99)
    with pytest.raises(MoneyError):
        check(True)
    with pytest.raises(MoneyError):
        percent_off(100, 101)


def test_overage_and_setup_by_hand():
    start, end = dt.date(2031, 2, 1), dt.date(2031, 3, 1)
    terms = {"webchat": Terms("webchat", monthly_fee=2000, setup_fee=5000, included_conversations=100,
                              overage_conversation=15)}
    # 10 seats all February, 5 more from the 15th: 14 of 28 days.
    segments = {(7, "webchat"): [Segment(start, dt.date(2031, 2, 15), 10), Segment(dt.date(2031, 2, 15), end, 15)]}
    draft = draft_invoice(7, start, end, terms=terms, segments=segments, usage={7: (90, 0), 8: (30, 0)},
                          setup_due={"webchat"}, discount_percent=10)
    amounts = [line.amount for line in draft.lines]
    # setup 50.00; 10 seats x 20.00 x 14/28 = 100.00; 15 x 20.00 x 14/28 = 150.00; 20 conversations x 0.15 = 3.00
    assert amounts[:4] == [5000, 10000, 15000, 300]
    assert amounts[4] == -3030  # 10% of 303.00
    assert draft.total == 27270
    assert format_amount(draft.total, "EUR") == "272.70 EUR"
