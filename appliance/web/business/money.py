"""Money as integers of minor units, and the one place that divides it.

Floats never hold money here: a price of 19.99 is ``1999``. Whenever an amount has to
be split (proration, discounts), :func:`split` hands out the remainder cent by cent
(largest remainder first), so the parts always add up to the whole.
"""

from __future__ import annotations

from fractions import Fraction


class MoneyError(ValueError):
    """An amount that is not a whole number of minor units."""


def check(amount, field: str = "amount") -> int:
    """``amount`` as an int of minor units; bool, float and str are refused (say which field)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MoneyError(f"{field} must be an integer number of minor units (cents), got {amount!r}")
    return amount


def split(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` in proportion to non-negative ``weights``; the parts sum to ``total`` exactly."""
    check(total, "total")
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise MoneyError("split needs at least one positive weight and none negative")
    whole = sum(weights)
    exact = [Fraction(total * w, whole) for w in weights]
    parts = [int(x // 1) for x in exact]  # floor, also for negative totals
    left = total - sum(parts)
    # Hand the leftover minor units to the largest remainders; ties go to the earlier part.
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def scale(amount: int, numerator: int, denominator: int) -> int:
    """``amount * numerator / denominator`` rounded half away from zero, in minor units."""
    check(amount)
    if denominator <= 0:
        raise MoneyError("denominator must be positive")
    value = Fraction(amount * numerator, denominator)
    sign = -1 if value < 0 else 1
    return sign * int(abs(value) + Fraction(1, 2))


def percent_off(amount: int, percent: int) -> int:
    """The discount on ``amount`` at a whole ``percent`` (0..100), rounded like :func:`scale`."""
    if not 0 <= percent <= 100:
        raise MoneyError(f"a discount must be between 0 and 100 percent, got {percent}")
    return scale(amount, percent, 100)


def format_amount(amount: int, currency: str, exponent: int = 2) -> str:
    """``123456, "EUR"`` -> ``"1,234.56 EUR"`` (display only; never parse this back)."""
    check(amount)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10 ** exponent)
    text = f"{units:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    return f"{sign}{text} {currency}"
