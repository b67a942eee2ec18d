"""The provider's business layer: catalogue, contracts, future-dated changes, metering, billing.

A domain of its own inside the web app: it reads the contact-center tables (tenants,
conversations, messages) but nothing outside this package imports it except the app
factory and the worker's job list. Money is always an ``int`` of minor units (cents);
see :mod:`.money`.
"""
