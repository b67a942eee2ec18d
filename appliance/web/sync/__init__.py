"""Sync back to the vendor, on the appliance side.

``usage`` counts what a day's report says, ``outbox`` is the database-backed
queue the sender claims batches from, ``service`` ties them to the instance's
settings, the audit trail, the worker job, the CLI and the admin page. The
wire format and the sender itself live in ``appliance.core.sync`` (no web app
needed there, so the vendor side can share them).
"""
