"""Where the core asks the licence before it grows.

The core calls only these two functions (inside the transaction that grows), so tenants
and seats are refused in one place for UI and API; webapp/licensing.py decides.
"""

from __future__ import annotations


def before_create_tenant(parent) -> None:
    from webapp import licensing

    licensing.check_can_create_tenant()


def before_add_seat(tenant) -> None:
    from webapp import licensing

    licensing.check_can_add_seat(tenant)
