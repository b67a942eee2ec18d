"""Live updates for agents' pages: Server-Sent Events streams and the presence heartbeat.

The streams say only *that* something changed (ids, kinds); the page then reloads the
part it shows through its own view, so what an agent sees is always what the normal,
access-checked pages render.
"""

from __future__ import annotations

import threading

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, stream_with_context

from appliance.web.models.contact_center import Conversation
from appliance.web.services import live
from appliance.web.views import helpers
from appliance.web.views.helpers import owned_or_404

live_pages = Blueprint("live", __name__)


def _slots() -> threading.BoundedSemaphore:
    """This process's stream slots (one app per gunicorn worker process)."""
    slots = current_app.extensions.get("live_stream_slots")
    if slots is None:
        slots = current_app.extensions.setdefault(
            "live_stream_slots", threading.BoundedSemaphore(int(live.setting("live_streams_per_process"))))
    return slots


def _bounded(scope: live.Scope, last_id: int | None, on_tick):
    # The slot is taken when the body first runs, not in the view: a response the server
    # closes unread (a HEAD, a client gone at once) then never holds one.
    slots = _slots()
    if not slots.acquire(blocking=False):
        yield from live.stream(scope, last_id, lifetime=0, poll=0,
                               retry_ms=int(live.setting("live_fallback_retry_ms")))
        return
    try:
        yield from live.stream(scope, last_id, lifetime=float(live.setting("live_stream_seconds")),
                               poll=float(live.setting("live_poll_seconds")), on_tick=on_tick)
    finally:  # also when the browser goes away: the server closes the generator
        slots.release()


def event_stream(scope: live.Scope, on_tick=None) -> Response:
    """The SSE response for ``scope``, resuming from the browser's Last-Event-ID.

    Each open stream holds a worker thread. Past ``live_streams_per_process`` open ones,
    a stream answers what is new and ends, telling the browser to come back in
    ``live_fallback_retry_ms``: the page degrades to polling instead of starving the
    threads that serve ordinary requests.
    """
    if "text/event-stream" not in request.headers.get("Accept", ""):
        abort(406, description="This URL is an event stream: open it with EventSource "
                               "(Accept: text/event-stream).")
    last_id = live.parse_last_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    body = _bounded(scope, last_id, on_tick)
    return Response(stream_with_context(body), mimetype="text/event-stream", headers={
        "Cache-Control": "no-store",
        # nginx must pass each event on at once instead of filling its proxy buffer.
        "X-Accel-Buffering": "no",
    })


def _agent_stream(scope: live.Scope) -> Response:
    user_id = g.principal.user_id
    # A page load counts as activity; the browser's own reconnects (with Last-Event-ID) do not.
    live.seen(user_id, active=not request.headers.get("Last-Event-ID"))
    return event_stream(scope, on_tick=lambda: live.seen(user_id))


@live_pages.route("/t/<id:tenant_id>/events")
@helpers.tenant_view("agent")
def inbox_events(tenant):
    """Changes to the tenant's conversations (?sub=1: and its sub-accounts')."""
    if request.args.get("sub") == "1":
        return _agent_stream(live.Scope(tenant_path=tenant.path))
    return _agent_stream(live.Scope(tenant_id=tenant.id))


@live_pages.route("/t/<id:tenant_id>/conversations/<id:conversation_id>/events")
@helpers.tenant_view("agent")
def conversation_events(tenant, conversation_id):
    conv = owned_or_404(Conversation, conversation_id, tenant)
    return _agent_stream(live.Scope(tenant_id=tenant.id, conversation_id=conv.id))


@live_pages.route("/t/<id:tenant_id>/presence", methods=["POST"])
@helpers.tenant_view("agent")
def presence(tenant):
    """The page had input lately: the agent is online (not away)."""
    live.seen(g.principal.user_id, active=True)
    return jsonify(state="online")
