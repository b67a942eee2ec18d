"""Where the core asks the licence before it grows.

The licence module (webapp/licensing.py) plugs its checks in here; the core only
knows these two calls, so tenants and seats are refused in one place for UI and API.
"""

from __future__ import annotations


def before_create_tenant(parent) -> None:
    try:
        from webapp import licensing
    except ImportError:
        return
    licensing.check_can_create_tenant()


def before_add_seat(tenant) -> None:
    try:
        from webapp import licensing
    except ImportError:
        return
    licensing.check_can_add_seat(tenant)
