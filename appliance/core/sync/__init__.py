"""Sync back to the vendor: the report format and the sender (no web app needed here)."""
