"""The vendor side of sync: a receiver for signed usage reports from appliances."""

from appliance.vendor_tools.receiver.app import create_app

__all__ = ["create_app"]
