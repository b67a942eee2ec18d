"""E-mail channel routes of the JSON API: settings (passwords write-only), a connection
test, and the quarantine of mail that could not be read. They attach to ``api``."""

from __future__ import annotations

from flask import jsonify

from appliance.web.api import api
from appliance.web.api.schema import spec
from appliance.web.channels.email import service as email
from appliance.web.channels.email.settings import FIELDS, SECURITY
from appliance.web.validation import F

SETTINGS_BODY = {
    f.name: F("integer" if f.name.endswith("_port") else "string",
              max_length=None if f.name.endswith("_port") else 500,
              enum=SECURITY if f.name.endswith("_security") else None,
              description=f.label + (" (write-only; empty keeps the stored one)" if f.secret else ""))
    for f in FIELDS
}


@api.route("/channels/<id:channel_id>/email")
@spec("An e-mail channel's settings (secrets as true/false) and mailbox state", role="admin", tag="channels")
def get_email_settings(channel):
    return jsonify(email.describe(channel))


@api.route("/channels/<id:channel_id>/email", methods=["PATCH"])
@spec("Change an e-mail channel's IMAP and SMTP settings (the fields given)", role="admin", body=SETTINGS_BODY,
      tag="channels")
def patch_email_settings(channel, data):
    result = email.save_settings(channel, data)
    return jsonify({**email.describe(channel), "missing": result["missing"]})


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
