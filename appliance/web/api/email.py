"""E-mail channel routes of the JSON API: the mailbox's state and the quarantine of mail
that could not be read. Settings and the connection test are the channel layer's
(``/channels/<id>/settings``, ``/channels/<id>/test``). They attach to ``api``."""

from __future__ import annotations

from flask import jsonify

from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.channels.email import service as email


@api.route("/channels/<id:channel_id>/email")
@spec("An e-mail channel's mailbox state, failed replies and quarantine count", role="admin", tag="channels",
      response=R.EMAIL_STATUS)
def get_email_status(channel):
    return jsonify(email.describe(channel))


@api.route("/tenants/<id:tenant_id>/email/quarantine")
@spec("Mail that could not be read, newest first (the reason, never the content)", role="admin",
      tag="channels", response=R.QUARANTINE)
def list_email_quarantine(tenant):
    return jsonify({"items": [q.to_json() for q in email.quarantined(tenant)]})
