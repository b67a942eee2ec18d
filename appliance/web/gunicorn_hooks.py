"""gunicorn server hooks, loaded with ``--config python:appliance.web.gunicorn_hooks``.

Each worker builds its own app; if that fails, every worker exits at once and
gunicorn's arbiter, reaping them while it halts, prints a traceback of its own over
the message. Building the app once in the arbiter first means a configuration or
database that cannot start stops gunicorn with one message and exit status 4 before
any worker is forked.
"""

from __future__ import annotations


def on_starting(server):
    from appliance.web import create_app

    create_app()  # the checks a worker would make; the app itself is discarded
