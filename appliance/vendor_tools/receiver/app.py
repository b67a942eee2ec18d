"""The vendor's sync receiver: a small Flask app over its own SQLite file.

Public endpoints take signed reports (the signature is the authentication):
``POST /api/v1/reports`` (batches from appliances) and ``POST /api/v1/exports``
(files carried out of air-gapped sites; also an upload form at ``/``).
Vendor-only endpoints need the admin token (``Authorization: Bearer TOKEN``, or
HTTP basic auth with the token as password so a browser can open the HTML
list); without a configured token they are switched off, not open.

TLS is terminated by the vendor's reverse proxy in front of waitress.
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, Response, current_app, jsonify, render_template_string, request

from appliance.core.sync.report import MAX_EXPORT_BYTES
from appliance.vendor_tools.receiver import service
from appliance.vendor_tools.receiver.models import open_db

log = logging.getLogger("appliance.vendor_tools.receiver")


def create_app(db_path, *, admin_token: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_EXPORT_BYTES,
        VENDOR_SYNC_ADMIN_TOKEN=admin_token or None,
        JSON_SORT_KEYS=False,
    )
    database = open_db(db_path)
    app.extensions["vendor_sync_db"] = database

    @app.before_request
    def _connect():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc):
        if not database.is_closed():
            database.close()

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'"
        )
        return response

    register_routes(app)
    return app


def _admin_ok() -> bool:
    token = _app_token()
    if not token:
        return False
    header = request.headers.get("Authorization", "")
    offered = None
    if header.startswith("Bearer "):
        offered = header[len("Bearer ") :].strip()
    elif request.authorization is not None and request.authorization.password:
        offered = request.authorization.password
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def _app_token():
    return current_app.config.get("VENDOR_SYNC_ADMIN_TOKEN")


def _admin_denied():
    if not _app_token():
        return jsonify(error="admin endpoints are disabled: start serve-sync with --admin-token-file"), 403
    response = jsonify(error="admin token required")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="vendor sync"'
    return response


def register_routes(app: Flask) -> None:
    @app.post("/api/v1/reports")
    def reports():
        try:
            answer = service.receive_batch(
                request.get_data(cache=False), request.headers.get("Idempotency-Key")
            )
        except service.BatchError as exc:
            return jsonify(error=exc.code, reason=exc.reason), exc.status
        rejected = [r for r in answer["results"] if r["status"] == "rejected"]
        if rejected:
            log.info("batch %s: %d report(s) rejected", answer["batch_id"], len(rejected))
        return jsonify(answer)

    @app.post("/api/v1/exports")
    def exports():
        upload = request.files.get("file")
        data = upload.read() if upload is not None else request.get_data(cache=False)
        result = service.receive_export(data)
        status = 422 if result["status"] == "rejected" else 200
        return jsonify(result), status

    @app.post("/upload")
    def upload_form():
        upload = request.files.get("file")
        if upload is None:
            result = {"status": "rejected", "code": "malformed", "reason": "no file was chosen"}
        else:
            result = service.receive_export(upload.read())
        status = 422 if result["status"] == "rejected" else 200
        return render_template_string(UPLOAD_PAGE, result=result), status

    @app.get("/")
    def index():
        return render_template_string(UPLOAD_PAGE, result=None)

    @app.get("/healthz")
    def health():
        return jsonify(status="ok")

    @app.post("/api/v1/installations")
    def register():
        if not _admin_ok():
            return _admin_denied()
        data = request.get_json(silent=True) or {}
        try:
            row, changed = service.register_installation(
                str(data.get("installation_id", "")),
                str(data.get("public_key", "")),
                data.get("label"),
                replace=bool(data.get("replace")),
            )
        except service.RegistrationError as exc:
            return jsonify(error="registration_refused", reason=str(exc)), 400
        return jsonify(
            installation_id=row.installation_id, fingerprint=row.fingerprint, changed=changed
        ), (201 if changed else 200)

    @app.get("/api/v1/installations")
    def installations_json():
        if not _admin_ok():
            return _admin_denied()
        return jsonify(
            installations=[s.to_json() for s in service.list_installations()],
            latest_version=service.latest_version(),
        )

    @app.get("/installations")
    def installations_html():
        if not _admin_ok():
            return _admin_denied()
        return render_template_string(
            LIST_PAGE,
            installations=service.list_installations(),
            latest_version=service.latest_version(),
        )

    @app.errorhandler(413)
    def _too_large(exc):
        return Response("request too large", status=413, mimetype="text/plain")


UPLOAD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Upload a sync report</title></head>
<body style="font-family: sans-serif; max-width: 44rem; margin: 2rem auto">
<h1>Upload a usage report</h1>
<p>For installations without a network path to the vendor: upload the file made by
<code>appliance sync export FILE</code>. Its signature is checked against the
installation's registered key.</p>
{% if result %}
  {% if result.status == "rejected" %}
  <p role="alert" style="color: #a00"><strong>Rejected ({{ result.code }}):</strong> {{ result.reason }}</p>
  {% elif result.status == "duplicate" %}
  <p>Report {{ result.report_id }} was already received; nothing changed.</p>
  {% else %}
  <p>Report {{ result.report_id }} stored.</p>
  {% endif %}
{% endif %}
<form method="post" action="/upload" enctype="multipart/form-data">
  <input type="file" name="file" required> <button type="submit">Upload</button>
</form>
</body></html>
"""

LIST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Installations</title></head>
<body style="font-family: sans-serif; margin: 2rem">
<h1>Installations</h1>
<p>Latest version announced: {{ latest_version or "none set" }}</p>
<table border="1" cellpadding="4" cellspacing="0">
<thead><tr><th>Installation</th><th>Label</th><th>Version</th><th>Profile</th><th>Last seen</th>
<th>Latest day</th><th>Tenants</th><th>Conversations</th><th>Messages</th>
<th>Active operators</th><th>Seats used</th><th>Reports</th><th>Audit entries</th></tr></thead>
<tbody>
{% for i in installations %}
<tr><td><code>{{ i.installation_id }}</code><br><small>{{ i.fingerprint }}</small></td>
<td>{{ i.label or "" }}</td><td>{{ i.version or "" }}</td><td>{{ i.profile or "" }}</td>
<td>{{ i.last_seen_at or "never" }}</td><td>{{ i.latest_day or "" }}</td>
<td>{{ i.tenants }}</td><td>{{ i.conversations }}</td><td>{{ i.messages }}</td>
<td>{{ i.active_operators }}</td><td>{{ i.seats_used }}</td><td>{{ i.reports }}</td>
<td>{{ "" if i.audit_entries is none else i.audit_entries }}{% if i.audit_trail_shrank %}
<br><strong class="warn">shrank between reports: entries deleted or an old backup restored</strong>{% endif %}</td></tr>
{% else %}
<tr><td colspan="13">No installation registered yet.</td></tr>
{% endfor %}
</tbody></table>
</body></html>
"""
