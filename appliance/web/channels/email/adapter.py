"""The e-mail kind for the channel layer: replies out by SMTP through the channel outbox.

Mail comes in by the worker's own IMAP job (``service.email_job``) rather than the
layer's generic poller: a mailbox position is (UIDVALIDITY, UID), each mail is stored
with its position in one transaction, and a mail that cannot be read is quarantined
instead of failing the batch. The mail is stored through the layer's ``store_inbound``
with ``find_conversation`` below, so the ledger and contacts are the layer's.
"""

from __future__ import annotations

from flask import current_app, has_app_context

from appliance.core.config import DEFAULTS
from appliance.web.channels.base import Adapter, Outbound, PermanentFailure, Refused, Sent, TemporaryFailure
from appliance.web.channels.email import smtp
from appliance.web.channels.email.settings import FIELDS, configured, smtp_settings


def _service():
    # Imported when called: the service uses the channel layer (config, ingest), which
    # imports the registry, which imports this module.
    from appliance.web.channels.email import service

    return service


def _timeout() -> float:
    if has_app_context() and "appliance_instance" in current_app.extensions:
        return float(current_app.extensions["appliance_instance"]["email"]["network_timeout"])
    return float(DEFAULTS["email"]["network_timeout"])


class EmailAdapter(Adapter):
    kind = "email"
    settings_fields = FIELDS
    polls = False  # see the module docstring: the e-mail job reads the mailbox

    def verify(self, settings, headers, raw_body, query) -> None:
        raise Refused(404, "E-mail channels read their mailbox by IMAP; they accept no posts.")

    def delivers(self, settings: dict) -> bool:
        return bool(configured(settings) and settings.get("smtp_host"))

    def find_conversation(self, channel, item):
        return _service().find_conversation(channel, item)

    def send(self, settings: dict, out: Outbound) -> Sent:
        try:
            mail = _service().build_reply(settings, out.message_uid, out.recipient_id)
            smtp.send(smtp_settings(settings, _timeout()), mail)
        except smtp.SmtpTemporaryError as exc:
            raise TemporaryFailure(str(exc)) from exc
        except smtp.SmtpPermanentError as exc:
            raise PermanentFailure(str(exc)) from exc
        return Sent(external_id=mail["Message-ID"])

    def test_connection(self, settings: dict) -> str:
        from appliance.web.channels.email.settings import problem

        wrong = problem(settings)
        if wrong:
            raise PermanentFailure(wrong)
        result = _service().check_servers(settings)
        failed = [f"{part.upper()}: {r['detail']}" for part, r in result.items() if not r["ok"]]
        if failed:
            raise PermanentFailure("; ".join(failed))
        return "; ".join(f"{part.upper()}: {r['detail']}" for part, r in result.items())
