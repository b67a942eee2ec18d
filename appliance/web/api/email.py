"""E-mail channel routes of the JSON API: settings (passwords write-only), a connection
test, and the quarantine of mail that could not be read. They attach to ``api``."""

from __future__ import annotations

from flask import jsonify

from appliance.web.api import api
from appliance.web.api.schema import spec
from appliance.web.channels.email import service as email
from appliance.web.validation import F

_FIELD_TYPES = {"imap_port": "integer", "smtp_port": "integer"}
SETTINGS_BODY = {
    name: F(_FIELD_TYPES.get(name, "string"), required=required and not secret, max_length=None
            if name in _FIELD_TYPES else 500, enum=email.SECURITY if name.endswith("_security") else None,
            description=label + (" (write-only; empty keeps the stored one)" if secret else ""))
    for name, label, secret, required in email.SETTINGS_FIELDS
}


@api.route("/channels/<id:channel_id>/email")
@spec("An e-mail channel's settings (secrets as true/false) and mailbox state", role="admin", tag="channels")
def get_email_settings(channel):
    return jsonify(email.describe(channel))


@api.route("/channels/<id:channel_id>/email", methods=["PUT"])
@spec("Set an e-mail channel's IMAP and SMTP settings", role="admin", body=SETTINGS_BODY, tag="channels")
def put_email_settings(channel, data):
    email.save_settings(channel, data)
    return jsonify(email.describe(channel))


@api.route("/channels/<id:channel_id>/email/test", methods=["POST"])
@spec("Log in to the channel's IMAP and SMTP servers and report what happened (body: {})", role="admin",
      body={}, tag="channels")
def test_email_settings(channel, data):
    return jsonify(email.test_connection(channel))


@api.route("/tenants/<id:tenant_id>/email/quarantine")
@spec("Mail that could not be read, newest first (the reason, never the content)", role="admin",
      tag="channels")
def list_email_quarantine(tenant):
    return jsonify({"items": [q.to_json() for q in email.quarantined(tenant)]})
