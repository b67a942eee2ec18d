"""Downloading attachments from the agents' pages (access-checked like every tenant route)."""

from __future__ import annotations

from flask import Blueprint, Response

from appliance.web.models.contact_center import Attachment
from appliance.web.services import attachments
from appliance.web.views import helpers
from appliance.web.views.helpers import owned_or_404

files = Blueprint("files", __name__)


@files.route("/t/<id:tenant_id>/attachments/<id:attachment_id>")
@helpers.tenant_view("agent")
def download(tenant, attachment_id):
    att = owned_or_404(Attachment, attachment_id, tenant)
    return Response(att.data, headers=attachments.download_headers(att))
