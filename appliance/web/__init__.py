"""The contact-center web app: ``create_app`` is the only way to build it."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFProtect
from peewee import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from appliance.core.config import ConfigError, Instance
from appliance.web import db as dbmod
from appliance.web.readiness import Readiness

log = logging.getLogger("appliance.web")
csrf = CSRFProtect()


def create_app(home=None, overrides: dict | None = None, instance: Instance | None = None) -> Flask:
    """Build the app for the instance in ``home`` (or ``APPLIANCE_HOME``).

    Called bare, as gunicorn's factory (``appliance.web:create_app()``), a configuration
    or database that cannot start ends the process with one message instead of a traceback.
    """
    from appliance.web import startup

    if home is None and overrides is None and instance is None:
        with startup.exit_on_config_error():
            return create_app(instance=Instance.load())
    instance = instance or Instance.load(home, overrides=overrides)
    app = Flask(__name__)
    app.extensions["appliance_instance"] = instance
    configure(app, instance)
    database = dbmod.bind(instance.database_url, dbmod.Pool.from_settings(instance.settings))
    startup.check_database(instance, database)  # never creates a missing database: init does
    app.extensions["database"] = database
    # Checking the master key against the database waits for it when it is down at start.
    Readiness.for_app(app, database, instance).start("the master key check", lambda: init_crypto(app, instance))
    init_audit(app, instance)
    register_request_hooks(app, database, instance)
    register_blueprints(app)
    register_error_handlers(app)
    csrf.init_app(app)
    return app


def configure(app: Flask, instance: Instance) -> None:
    key_path = instance.path(instance["secret_key_file"])
    try:
        secret = key_path.read_bytes().strip()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"The session key {key_path} is missing: run 'appliance --home {instance.home} init' "
            "to create it (existing keys are never overwritten)."
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"The session key {key_path} cannot be read ({exc.strerror}): run as the service user, "
            f"or give that user the file ('chown SERVICE_USER {key_path}; chmod 600 {key_path}')."
        ) from exc
    if len(secret) < 32:
        raise ConfigError(f"The session key {key_path} is too short; delete it and run init again.")
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="appliance_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(instance["session_cookie_secure"]),
        # The cookie lives as long as a session can; the server-side session decides (auth.py).
        PERMANENT_SESSION_LIFETIME=dt.timedelta(seconds=int(instance["session_absolute_timeout_seconds"])),
        MAX_CONTENT_LENGTH=int(instance["max_request_bytes"]),
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session, which expires on its own
        JSON_SORT_KEYS=False,
        LOGIN_THROTTLE_ATTEMPTS=int(instance["login_throttle_attempts"]),
        LOGIN_THROTTLE_WINDOW=int(instance["login_throttle_window_seconds"]),
        PROFILE=instance["profile"],
    )


def init_crypto(app: Flask, instance: Instance) -> None:
    """Load the master key (encryption at rest); refuses to start on a wrong key."""
    from appliance.web import crypto

    crypto.init_app(app, instance)


def init_audit(app: Flask, instance: Instance) -> None:
    """Load the audit chain's key and anchor (outside the database: see models/audit.py)."""
    from appliance.core.identity import IdentityError
    from appliance.web.models.audit import bind_trail

    try:
        app.extensions["audit_trail"] = bind_trail(instance)
    except IdentityError as exc:
        raise ConfigError(f"The audit trail needs the installation key: {exc}") from exc


def register_request_hooks(app: Flask, database, instance: Instance) -> None:
    readiness = app.extensions["readiness"]

    @app.before_request
    def _connect():
        # Static files and health need no session; health connects by itself.
        if request.endpoint not in ("static",):
            database.connect(reuse_if_open=True)
            readiness.ensure()  # start-up steps that waited for a database that was down

    @app.before_request
    def _upload_limit():
        # Registered before CSRF checking, which reads the form: routes marked by
        # attachments.accepts_uploads take files up to the attachment limit.
        view = app.view_functions.get(request.endpoint or "")
        if getattr(view, "accepts_uploads", False):
            from appliance.web.services.attachments import MAX_FILES

            request.max_content_length = MAX_FILES * int(instance["attachment_max_bytes"]) + 256 * 1024

    @app.teardown_request
    def _close(exc):
        if g.pop("audit_anchor_pending", False) and not database.is_closed() and not database.in_transaction():
            from appliance.web.models.audit import advance_anchor

            try:
                advance_anchor()
            except Exception:  # the next event moves it on; never fail the answer for it
                log.exception("could not advance the audit anchor")
        if not database.is_closed():
            database.close()

    @app.teardown_appcontext
    def _anchor_left_pending(exc):
        # Work outside a request (a worker's job, a command, a script in an app context)
        # that recorded events inside its transaction anchors them when its context ends.
        if not g.pop("audit_anchor_pending", False) or database.in_transaction():
            return
        from appliance.web.models.audit import advance_anchor

        try:
            if database.is_closed():
                with database.connection_context():
                    advance_anchor()
            else:
                advance_anchor()
        except Exception:  # the next event moves it on
            log.exception("could not advance the audit anchor")

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Pages and API answers hold tenant data: no browser or proxy may keep a copy
        # (a shared machine's back button, a caching proxy). Static assets are public.
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        # The chat widget is made to be framed by the tenant's own site; it sets its own CSP.
        if not (request.endpoint or "").startswith("public.widget"):
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                "frame-ancestors 'none'",
            )
        return response


class IdConverter(IntegerConverter):
    """Positive ids that fit a 64-bit column: bigger numbers are 404, not a database error."""

    regex = r"[1-9]\d{0,17}"


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    from appliance.web.api import api
    from appliance.web.auth import enrolment_gate
    from appliance.web.business.views import business_pages
    from appliance.web.views.account import account
    from appliance.web.views.admin import admin
    from appliance.web.views.attachments import files
    from appliance.web.views.audit import audit_pages
    from appliance.web.views.auth import auth
    from appliance.web.views.dashboard import dashboard_pages
    from appliance.web.views.email import email_admin
    from appliance.web.views.inbox import inbox
    from appliance.web.views.knowledge import knowledge
    from appliance.web.views.licence import licence_pages
    from appliance.web.views.live import live_pages
    from appliance.web.views.public import public
    from appliance.web.views.reports import report_pages
    from appliance.web.views.routing import routing_pages
    from appliance.web.views.security import security
    from appliance.web.views.supervisor import supervisor_pages
    from appliance.web.views.sync import sync_admin
    from appliance.web.views.system import system

    for blueprint in (auth, account, inbox, admin, audit_pages, security, knowledge, public, licence_pages, api,
                      sync_admin, system, live_pages, files, email_admin, business_pages, report_pages,
                      supervisor_pages, dashboard_pages, routing_pages):
        app.register_blueprint(blueprint)
    app.before_request(enrolment_gate)
    csrf.exempt(api)
    csrf.exempt(public)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.blueprint in ("api",) or (
        request.accept_mimetypes.best == "application/json"
    )


def register_error_handlers(app: Flask) -> None:
    from appliance.web import crypto

    crypto.register_error_handler(app)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if wants_json() or request.path.startswith("/hooks/") or request.path.startswith("/widget/"):
            return jsonify(error=exc.name, message=exc.description, status=exc.code), exc.code
        return render_template("error.html", error=exc), exc.code

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(exc):
        fault = app.extensions["readiness"].report(exc)  # logged once a minute, not per request
        if wants_json() or request.path.startswith(("/hooks/", "/widget/")):
            return jsonify(error=fault.title, message=fault.message, reason=fault.kind, status=fault.status), \
                fault.status
        return _render_without_database(_Simple(fault.status, fault.title, fault.message)), fault.status

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, HTTPException):
            return _http_error(exc)
        if app.extensions["readiness"].fault(exc) is not None:  # a full or failing disk
            return _database_down(exc)
        # The exception type and route only: bodies and values may hold personal data.
        log.exception("unhandled %s on %s %s", type(exc).__name__, request.method, request.url_rule)
        message = "Something went wrong on our side; the error was logged."
        if wants_json():
            return jsonify(error="Internal Server Error", message=message, status=500), 500
        return render_template("error.html", error=_Simple(500, "Internal Server Error", message)), 500


def _render_without_database(error) -> str:
    """The error page without context processors: they query the database, which is down."""
    try:
        template = current_app.jinja_env.get_template("error.html")
        return template.render(error=error, request=request, session={}, g=g, current_user=None, tenant=None)
    except Exception:  # never let the error page itself fail
        return f"<!doctype html><title>{error.code}</title><h1>{error.code} {error.name}</h1><p>{error.description}</p>"


class _Simple:
    def __init__(self, code, name, description):
        self.code, self.name, self.description = code, name, description


def instance_of(app: Flask) -> Instance:
    return app.extensions["appliance_instance"]


def current_user():
    return getattr(g, "user", None)
