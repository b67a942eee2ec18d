"""Operator- and vendor-side tooling of the contact-center appliance."""

__version__ = "0.1.0"
