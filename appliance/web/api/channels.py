"""Channel settings, test connection, signing secrets and delivery retries in the JSON API (attached to ``api``).

Settings answer with each secret as ``{"set": true|false}``, never its value; a secret
the appliance generated is in ``generated_secrets`` of the one answer that made it.
"""

from __future__ import annotations

from flask import g, jsonify

from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.channels import ADAPTERS
from appliance.web.services import catalogue, channel_admin, outbox
from appliance.web.validation import F


def _setting_names() -> list[str]:
    return sorted({f.name for cls in ADAPTERS.values() for f in cls.settings_fields})


# Every kind's fields; a field the channel's kind does not have is refused with 422 naming the kind's fields.
SETTINGS_BODY = {name: F("string", max_length=2000, nullable=True) for name in _setting_names()}


def _actor():
    return g.principal.user_id


@api.route("/channels/<id:channel_id>/settings")
@spec("A channel's settings form, values (secrets only as set / not set) and status", role="admin",
      tag="channels", response=R.CHANNEL_SETTINGS)
def get_channel_settings(channel):
    return jsonify(channel_admin.describe(channel))


@api.route("/channels/<id:channel_id>/settings", methods=["PATCH"])
@spec("Change a channel's settings (an empty secret keeps the stored one)", role="admin", body=SETTINGS_BODY,
      tag="channels", response=R.CHANNEL_SETTINGS)
def patch_channel_settings(channel, data):
    return jsonify(channel_admin.update(channel, data, actor_id=_actor()))


@api.route("/channels/<id:channel_id>/test", methods=["POST"])
@spec("Test the connection to the channel's service", role="admin", tag="channels", body={}, response=R.CHANNEL_TEST)
def test_channel(channel, data):
    return jsonify(channel_admin.test_connection(channel, actor_id=_actor()))


ROTATE_BODY = {"keep_previous": F("boolean", description="false: the old secret stops verifying at once "
                                                       "(a leaked one); default true: it verifies until "
                                                       "previous_valid_until (channels.secret_grace_hours)")}


@api.route("/channels/<id:channel_id>/secret", methods=["POST"])
@spec("Make a new signing secret (webhook, web chat); the old one still verifies until previous_valid_until "
      "unless keep_previous is false; the secret is in this answer only", role="admin", tag="channels",
      body=ROTATE_BODY, response=R.SIGNING_SECRET)
def rotate_channel_secret(channel, data):
    answer = catalogue.rotate_secret(channel, actor_id=_actor(), keep_previous=data.get("keep_previous", True))
    return jsonify(channel_id=channel.id, **answer)


@api.route("/messages/<id:message_id>/retry", methods=["POST"])
@spec("Send a reply whose delivery failed again", role="agent", tag="conversations", body={}, response=R.RETRIED)
def retry_message(message, data):
    row = outbox.retry(message, actor_id=_actor())
    return jsonify(message_id=message.id, delivery={"state": row.state, "attempts": row.attempts})
