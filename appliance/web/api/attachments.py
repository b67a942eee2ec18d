"""API routes for attachments, both ways: send a message with a file, list and fetch the
files of a message (a contact's inbound ones as well as the agents').

Files travel in JSON as standard base64, so an upload is bounded by ``max_request_bytes``
(base64 adds a third) as well as by ``attachment_max_bytes``.
"""

from __future__ import annotations

from flask import Response, g, jsonify

from appliance.web.api import api
from appliance.web.api import responses as R
from appliance.web.api.schema import spec
from appliance.web.services import attachments
from appliance.web.validation import F

ATTACHMENT_BODY = {
    "filename": F("string", required=True, max_length=1000),
    "content_type": F("string", max_length=255, description="Guessed from the file name when left out"),
    "data": F("string", required=True, max_length=16 * 1024 * 1024, description="The file's bytes, base64"),
    "body": F("string", max_length=20_000, description="Text sent with the file"),
    "direction": F("string", enum=("out", "note", "in"), description="out (default): a reply to the contact"),
}


def _with_files(msg) -> dict:
    found = attachments.metadata_for([msg.id]).get(msg.id, [])
    return msg.to_json() | {"attachments": [a.to_json() for a in found]}


@api.route("/conversations/<id:conversation_id>/attachments", methods=["POST"])
@spec("Send a file in a conversation (a new message carrying it)", body=ATTACHMENT_BODY,
      tag="attachments", status=201, response=R.MESSAGE_WITH_FILES)
def upload_attachment(conversation, data):
    direction = data.get("direction", "out")
    upload = attachments.Upload(data["filename"], data.get("content_type", ""),
                                attachments.decode_base64(data["data"]))
    msg = attachments.add_message_with_files(conversation, direction, data.get("body"), [upload],
                                             author=g.principal.user_id if direction != "in" else None)
    return jsonify(_with_files(msg)), 201


@api.route("/messages/<id:message_id>/attachments")
@spec("The files of a message (without their bytes)", tag="attachments", response=R.ATTACHMENTS)
def list_attachments(message):
    found = attachments.metadata_for([message.id]).get(message.id, [])
    return jsonify(items=[a.to_json() for a in found], next_cursor=None)


@api.route("/attachments/<id:attachment_id>")
@spec("One attachment's name, type and size", tag="attachments", response=R.ATTACHMENT)
def get_attachment(attachment):
    return jsonify(attachment.to_json())


@api.route("/attachments/<id:attachment_id>/content")
@spec("One attachment's bytes, as a download", tag="attachments", response=R.FILE_CONTENT)
def attachment_content(attachment):
    return Response(attachment.data, headers=attachments.download_headers(attachment))
