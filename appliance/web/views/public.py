"""Endpoints without a login: health, metrics, the chat widget and inbound webhooks.

Everything here answers JSON on bad input (4xx), never a 500: these URLs face
monitoring systems, anonymous visitors and third-party gateways.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import uuid
from importlib import metadata

from flask import Blueprint, abort, current_app, jsonify, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer
from peewee import JOIN, DatabaseError, InterfaceError, OperationalError, fn
from werkzeug.exceptions import HTTPException

from appliance.web.channels import adapter_for
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import PREVIOUS_SECRET, Refused
from appliance.web.channels.ingest import store_inbound
from appliance.web.crypto import MasterKeyError
from appliance.web.db import Prepared, write_transaction
from appliance.web.models.channels import ChannelConfig
from appliance.web.models.contact_center import Attachment, Channel, Conversation, Message
from appliance.web.models.tenancy import Tenant, User
from appliance.web.services import (
    ServiceError,
    attachments,
    catalogue,
    conversations,
    licence,
    lifecycle,
    live,
    outbox,
    throttle,
    visitors,
)
from appliance.web.validation import F, json_object

public = Blueprint("public", __name__)
log = logging.getLogger("appliance.web.public")

WIDGET_FIELDS = {
    "name": F("string", max_length=200, nullable=True),
    "email": F("string", max_length=254, nullable=True),
    "body": F("string", max_length=conversations.MAX_BODY, nullable=True),
    "token": F("string", max_length=400, nullable=True),
    # The customer's site vouching for a logged-in visitor (services/visitors.py).
    "identity": F("string", max_length=visitors.IDENTITY_MAX, nullable=True),
}
HOOK_KINDS = ("webhook", "email", "telegram", "whatsapp", "vk", "viber")
WIDGET_POLL_LIMIT = 200


def _version() -> str:
    try:
        return metadata.version("contact-appliance")
    except metadata.PackageNotFoundError:
        return "unknown"


def _error(status: int, message: str):
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
             405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large",
             415: "Unsupported Media Type", 422: "Unprocessable Entity",
             500: "Internal Server Error", 503: "Service Unavailable"}
    return jsonify(error=names.get(status, "Error"), message=message, status=status), status


@public.errorhandler(OperationalError)
@public.errorhandler(InterfaceError)
def _database_down(exc):
    # Registered on the blueprint so that it also covers the app's connect hook, which
    # runs before our views: monitoring and gateways get JSON, not the HTML error page.
    fault = current_app.extensions["readiness"].report(exc)  # logged once a minute
    if request.endpoint == "public.health":
        state = "unreachable" if fault.kind.startswith("database") else fault.kind
        return jsonify(status="error", database=state, reason=fault.reason, version=_version()), fault.status
    return jsonify(error=fault.title, message=fault.message, reason=fault.kind, status=fault.status), fault.status


@public.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    return _error(exc.status, str(exc))


@public.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return jsonify(error=exc.name, message=exc.description, status=exc.code), exc.code


@public.errorhandler(Exception)
def _unexpected(exc: Exception):
    # Blueprint handlers come before the app's for any exception class, so this one
    # answers for the whole blueprint: gateways and monitors get JSON, never the HTML page.
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    if isinstance(exc, MasterKeyError):
        log.error("encryption keys unavailable on %s %s: %s", request.method, request.url_rule, exc)
        answer = _error(503, "Encryption keys are unavailable on this server; try again shortly.")
        answer[0].headers["Retry-After"] = "5"
        return answer
    # The exception type and route only: bodies and values may hold personal data.
    log.exception("unhandled %s on %s %s", type(exc).__name__, request.method, request.url_rule)
    return _error(500, "Something went wrong on our side; the error was logged.")


# --- health and metrics ------------------------------------------------------------------

@public.route("/health")
def health():
    from appliance.web.migrations import current_version
    from appliance.web.startup import schema_problem

    database = current_app.extensions["database"]
    readiness = current_app.extensions["readiness"]
    try:
        database.connect(reuse_if_open=True)
        readiness.ensure()
        database.execute_sql("SELECT 1")
        schema = current_version(database)
        problem = schema_problem(database)
    except DatabaseError as exc:
        return _database_down(exc)
    if problem:  # serving on a schema the code does not match answers wrongly: not healthy
        return jsonify(status="error", database="ok", schema="not ready", reason=problem,
                       version=_version(), schema_version=schema), 503
    problem = readiness.disk_problem()  # reads still work on a full disk; writes do not
    if problem:
        return jsonify(status="error", database="ok", disk=problem, version=_version(), schema_version=schema), 503
    return jsonify(status="ok", database="ok", version=_version(), schema_version=schema)


def _metrics_allowed() -> bool:
    """Loopback callers, or a bearer token when ``metrics_token`` is configured.

    A request that came through a reverse proxy (X-Forwarded-For) is not treated as
    local even though the proxy connects from loopback.
    """
    token = str(current_app.extensions["appliance_instance"]["metrics_token"] or "")
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    if request.headers.get("X-Forwarded-For") or request.headers.get("X-Real-IP"):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@public.route("/metrics")
def metrics():
    if not _metrics_allowed():
        abort(403, description="Metrics are served to loopback, or with the configured metrics token.")
    by_status = dict(
        Conversation.select(Conversation.status, fn.COUNT(Conversation.id)).group_by(Conversation.status).tuples()
    )
    messages = Conversation.select(fn.COALESCE(fn.SUM(Conversation.message_count), 0)).scalar() or 0
    lines = [
        "# HELP appliance_conversations Conversations by status.",
        "# TYPE appliance_conversations gauge",
    ]
    for status in ("open", "pending", "resolved"):
        lines.append(f'appliance_conversations{{status="{status}"}} {int(by_status.get(status, 0))}')
    lines += [
        "# HELP appliance_messages_total Messages stored (in, out and notes).",
        "# TYPE appliance_messages_total counter",
        f"appliance_messages_total {int(messages)}",
        "# HELP appliance_tenants Active tenants.",
        "# TYPE appliance_tenants gauge",
        f"appliance_tenants {Tenant.select().where(Tenant.is_active == True).count()}",
        "# HELP appliance_users Active users.",
        "# TYPE appliance_users gauge",
        f"appliance_users {User.select().where(User.is_active == True).count()}",
        f'appliance_build_info{{version="{_version()}"}} 1',
        *_replication_metrics(),
    ]
    return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


def _replication_metrics() -> list[str]:
    """PostgreSQL's streaming replication: the standbys of this primary and their lag."""
    from appliance.web.system_status import is_postgres_database, replication_state

    database = current_app.extensions["database"]
    if not is_postgres_database(database):
        return []
    state = replication_state(database)
    lines = [
        "# HELP appliance_database_in_recovery 1 when the app's database is a read-only standby.",
        "# TYPE appliance_database_in_recovery gauge",
        f"appliance_database_in_recovery {int(state.in_recovery)}",
        "# HELP appliance_replication_standbys Standbys streaming from the app's database.",
        "# TYPE appliance_replication_standbys gauge",
        f"appliance_replication_standbys {sum(1 for s in state.standbys if s.state == 'streaming')}",
        "# HELP appliance_replication_lag_seconds Replay lag of each standby.",
        "# TYPE appliance_replication_lag_seconds gauge",
    ]
    lines += [f'appliance_replication_lag_seconds{{standby="{s.name}"}} {s.lag_seconds:.3f}' for s in state.standbys]
    lines += ["# HELP appliance_replication_lag_bytes WAL each standby has yet to replay.",
              "# TYPE appliance_replication_lag_bytes gauge"]
    lines += [f'appliance_replication_lag_bytes{{standby="{s.name}"}} {s.lag_bytes}' for s in state.standbys]
    return lines


# --- shared input handling ---------------------------------------------------------------

# The channel, its tenant and its settings row in one statement (every inbound post asks).
_CHANNEL_BY_KEY = Prepared(lambda key: (
    Channel.select(Channel, Tenant, ChannelConfig).join(Tenant).switch(Channel)
    .join(ChannelConfig, JOIN.LEFT_OUTER, on=(ChannelConfig.channel == Channel.id), attr="config_row")
    .where(Channel.public_key == key).limit(1)))


def _channel(key: str, kinds: tuple) -> Channel:
    if len(key) > 64:
        abort(404)
    channel = next(iter(_CHANNEL_BY_KEY(key)), None)
    if channel is None or channel.kind not in kinds:
        abort(404, description="No active channel has this key.")
    tenant = channel.tenant
    # Senders (and the services posting for them) get told why, so they stop retrying.
    if not tenant.is_active:
        abort(410, description="This channel's organisation is deactivated: it takes no messages. "
                               "Its provider can reactivate it.")
    if not channel.is_active:
        abort(403, description="This channel is switched off by its organisation's admins: it takes no "
                               "messages until they switch it on again.")
    # Web chat, messenger and e-mail channels need the tenant's program (403 says why).
    licence.require_program_for_channel(tenant, channel.kind)
    return channel


def _json_object(raw: bytes, fields: dict) -> dict:
    """The body checked by the shared validator, its text fields trimmed (empty: None).

    No content type is demanded here: not every messaging gateway sends one, and the
    webhook's signature is computed over the raw bytes whatever they are declared as.
    """
    data = json_object(raw, fields)
    return {k: (v.strip() or None) if isinstance(v, str) and k != "body" else v for k, v in data.items()}


# --- chat widget -------------------------------------------------------------------------

def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="widget")


def _widget_conversation(channel: Channel, token: str | None) -> Conversation | None:
    """The visitor's conversation from their signed token, bound to this channel."""
    if not token:
        return None
    try:
        data = _serializer().loads(token)
    except BadSignature:
        abort(403, description="This conversation token is not valid here.")
    if not isinstance(data, dict) or data.get("k") != channel.id or not isinstance(data.get("c"), int):
        abort(403, description="This conversation token is not valid here.")
    conv = Conversation.get_or_none(Conversation.id == data["c"], Conversation.channel == channel.id)
    if conv is None:
        abort(404, description="That conversation no longer exists.")
    return conv


def _widget_headers(response):
    # The widget is meant to be framed by the customer's own site; the app's
    # X-Frame-Options DENY is overridden for browsers by CSP frame-ancestors.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors *"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _limit_new_conversations(channel: Channel) -> None:
    """New widget conversations per visitor address and per channel (the app's own limit,
    so the embedded default without a reverse proxy is covered too)."""
    limits = throttle.limits()
    window = int(limits["widget_window_seconds"])
    throttle.take("widget.address", throttle.digest(channel.id, throttle.client_address()),
                  int(limits["widget_conversations_per_address"]), window, "new conversations from your address")
    throttle.take("widget.channel", throttle.digest(channel.id), int(limits["widget_conversations_per_channel"]),
                  window, "new conversations on this channel")


@public.route("/widget/<key>")
def widget(key):
    channel = _channel(key, ("webchat",))
    tenant = Tenant.get_by_id(channel.tenant_id)
    response = current_app.make_response(render_template("public/widget.html", channel=channel, brand=tenant,
                                                                    look=lifecycle.branding_of(tenant)))
    return _widget_headers(response)


@public.route("/widget/<key>/messages", methods=["POST"])
def widget_post(key):
    channel = _channel(key, ("webchat",))
    data = _json_object(request.get_data(cache=False), WIDGET_FIELDS)
    conv = _widget_conversation(channel, data.get("token"))
    if conv is not None:
        conv = conversations.ingest_inbound(channel, body=data.get("body"), conversation=conv)
    else:
        # Always a new conversation without a token: continuing "the open conversation
        # of this e-mail" would hand anyone who types a customer's address their history.
        if not (data.get("body") or "").strip():
            abort(422, description="A message needs a non-empty body.")
        _limit_new_conversations(channel)
        # What a visitor types about themselves stays on an unverified contact of their
        # own: only the site's signed identity token reaches an existing customer's record.
        tenant = Tenant.get_by_id(channel.tenant_id)
        contact = visitors.contact_for_visitor(channel, tenant, name=data.get("name"), email=data.get("email"),
                                               identity=data.get("identity"))
        conv = conversations.start_conversation(channel, tenant, contact, data.get("body"))
    token = _serializer().dumps({"c": conv.id, "k": channel.id})
    return _widget_headers(jsonify(token=token, conversation_id=conv.id)), 201


@public.route("/widget/<key>/messages")
def widget_messages(key):
    channel = _channel(key, ("webchat",))
    conv = _widget_conversation(channel, request.args.get("token", "")[:400])
    if conv is None:
        abort(400, description="Pass the token from your first message as ?token=.")
    after = request.args.get("after", "0")
    after = int(after) if after.isdigit() and len(after) <= 18 else 0
    rows = (
        Message.select().where(Message.conversation == conv.id, Message.direction != "note", Message.id > after)
        .order_by(Message.id).limit(WIDGET_POLL_LIMIT)
    )
    rows = list(rows)
    files = attachments.metadata_for(m.id for m in rows)
    items = [{"id": m.id, "direction": m.direction, "body": m.body, "created_at": m.created_at.isoformat() + "Z",
              "files": [_widget_file(key, a) for a in files.get(m.id, [])]}
             for m in rows]
    return _widget_headers(jsonify(conversation_id=conv.id, status=conv.status, items=items))


def _widget_file(key: str, att: Attachment) -> dict:
    return {"id": att.id, "filename": att.filename, "size": att.size,
            "url": f"/widget/{key}/files/{att.uid}"}


@public.route("/widget/<key>/files", methods=["POST"])
@attachments.accepts_uploads
def widget_upload(key):
    """A visitor's files (multipart: ``file`` fields, optional ``body``, ``token``, ``name``, ``email``)."""
    channel = _channel(key, ("webchat",))
    form = request.form
    conv = _widget_conversation(channel, form.get("token", "")[:400] or None)
    uploads = [attachments.from_form(f) for f in request.files.getlist("file") if f and f.filename]
    if not uploads:
        abort(422, description="Attach at least one file in the multipart field 'file'.")
    body = (form.get("body") or "")[: conversations.MAX_BODY + 1]
    with write_transaction():
        if conv is None:
            tenant = Tenant.get_by_id(channel.tenant_id)
            contact = conversations.find_or_create_contact(
                tenant, name=(form.get("name") or "").strip()[:200] or None,
                email=(form.get("email") or "").strip()[:254] or None)
            checked = [attachments.check_file(u) for u in uploads]
            conv = conversations.start_conversation(
                channel, tenant, contact, body.strip() or "Attachment: " + ", ".join(c.filename for c in checked))
            first = Message.select().where(Message.conversation == conv.id).order_by(Message.id).get()
            for upload in uploads:
                attachments.store_file(first, upload)
        else:
            attachments.add_message_with_files(conv, "in", body, uploads)
            if conv.status == "resolved":
                conversations.set_status(conv, "open")
    token = _serializer().dumps({"c": conv.id, "k": channel.id})
    return _widget_headers(jsonify(token=token, conversation_id=conv.id)), 201


@public.route("/widget/<key>/files/<uid>")
def widget_file(key, uid):
    """A file of the visitor's own conversation (never one attached to an internal note)."""
    channel = _channel(key, ("webchat",))
    conv = _widget_conversation(channel, request.args.get("token", "")[:400])
    if conv is None:
        abort(400, description="Pass the conversation token as ?token=.")
    att = (Attachment.select().join(Message)
           .where(Attachment.uid == _uuid_or_404(uid), Message.conversation == conv.id, Message.direction != "note")
           .first())
    if att is None:
        abort(404, description="No such file in this conversation.")
    return current_app.response_class(att.data, headers=attachments.download_headers(att))


def _uuid_or_404(text: str):
    try:
        return uuid.UUID(text[:40])
    except ValueError:
        abort(404, description="No such file in this conversation.")


@public.route("/widget/<key>/events")
def widget_events(key):
    """The visitor's stream: a frame whenever an agent replies (polling stays the fallback)."""
    from appliance.web.views.live import event_stream

    channel = _channel(key, ("webchat",))
    conv = _widget_conversation(channel, request.args.get("token", "")[:400])
    if conv is None:
        abort(400, description="Pass the conversation token as ?token=.")
    return _widget_headers(event_stream(live.Scope(conversation_id=conv.id, visitor=True)))


# --- inbound posts of every channel kind ------------------------------------------------

@public.route("/hooks/<key>", methods=["GET", "POST"])
def hook(key):
    """Every kind's inbound posts (and set-up requests), verified by the kind's own rule
    over the raw bytes before anything is parsed; each item is stored once."""
    limits = throttle.limits()
    # Before any work (and before the signature check): a flood is refused cheaply.
    throttle.take("webhook.address", throttle.digest(throttle.client_address()),
                  int(limits["webhook_requests_per_address"]), int(limits["webhook_window_seconds"]),
                  "webhook requests from your address")
    channel = _channel(key, HOOK_KINDS)
    adapter = adapter_for(channel.kind)
    settings = channel_config.settings_for(channel)
    raw = request.get_data(cache=False)
    headers, query = request.headers, request.args
    try:
        answer = adapter.handshake(settings, headers, raw, query)
        if answer is not None:
            return answer
        if request.method == "GET":
            return _error(405, "Deliveries are POSTed; GET answers only the service's set-up handshake.")
        if adapter.verify(settings, headers, raw, query) == PREVIOUS_SECRET:
            catalogue.previous_secret_used(channel)
        items = adapter.parse(settings, headers, raw, query)
        receipts = adapter.statuses(settings, headers, raw, query)
    except Refused as exc:
        return _error(exc.status, exc.reason)
    stored = store_inbound(channel, items)
    if receipts:
        outbox.record_statuses(channel, receipts)
    acknowledged = adapter.acknowledge(stored)
    if acknowledged is not None:
        return acknowledged
    if channel.kind in ("webhook", "email") and items and not stored:
        return _error(409, "This delivery was received before (same signature or id): it is not stored again.")
    ids = sorted({m.conversation_id for m in stored})
    status = 202 if channel.kind in ("webhook", "email") else 200  # messengers retry on anything but 200
    return jsonify(stored=len(stored), conversation_id=ids[0] if ids else None, conversation_ids=ids), status
