"""Sending a reply by SMTP submission (587 with STARTTLS and AUTH, or 465 implicit TLS).

Credentials are sent only over TLS: with security "starttls" the session is upgraded before
AUTH and the send fails when the server does not offer STARTTLS, rather than falling back to
plain text. "none" exists for a relay on loopback that needs no login.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    username: str = ""
    password: str = ""
    security: str = "starttls"  # starttls | ssl | none
    ca_file: str = ""
    timeout: float = 30.0


class SmtpTemporaryError(RuntimeError):
    """Worth retrying later: the server is down, busy or answered 4xx."""


class SmtpUnreachable(SmtpTemporaryError):
    """No session at all (refused, timed out, dropped): the other mails would fail alike."""


class SmtpPermanentError(RuntimeError):
    """Retrying will not help: a login or recipient refused, or TLS not offered."""


def _context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file or None)


def open_session(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "ssl":
        conn = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                context=_context(settings))
    else:
        conn = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        conn.ehlo()
        if settings.security == "starttls":
            if not conn.has_extn("starttls"):
                conn.quit()
                raise SmtpPermanentError(f"SMTP server {settings.host}:{settings.port} does not offer "
                                         "STARTTLS: the password is never sent in the clear")
            conn.starttls(context=_context(settings))
            conn.ehlo()
    if settings.username:
        if settings.security == "none":
            conn.quit()
            raise SmtpPermanentError("SMTP login needs security starttls or ssl")
        conn.login(settings.username, settings.password)
    return conn


def check(settings: SmtpSettings) -> None:
    """Connect, upgrade to TLS and log in, sending nothing (the "test connection" action)."""
    with Session(settings) as session:
        session.open()


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    with Session(settings) as session:
        session.send(message)


class Session:
    """One submission session for several mails: a round sending many replies pays for the
    TLS handshake and the login once. Any failure closes it; the next send opens a new one."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.conn: smtplib.SMTP | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if self.conn is None:
            with _translated(self.settings):
                self.conn = open_session(self.settings)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.conn.quit()
            self.conn = None

    def send(self, message: EmailMessage) -> None:
        self.open()
        try:
            with _translated(self.settings):
                refused = self.conn.send_message(message)
        except (SmtpTemporaryError, SmtpPermanentError):
            self.close()
            raise
        if refused:
            raise SmtpPermanentError(f"SMTP server refused {len(refused)} recipient(s)")


@contextlib.contextmanager
def _translated(settings: SmtpSettings):
    """smtplib's and ssl's exceptions as temporary (retry later) or permanent failures."""
    try:
        yield
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpPermanentError("SMTP login refused: check the SMTP username and password "
                                 f"({exc.smtp_code})") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= c < 500 for c in codes):
            raise SmtpTemporaryError(f"SMTP recipient deferred ({codes[0]})") from exc
        raise SmtpPermanentError(f"SMTP recipient refused ({codes[0] if codes else '?'})") from exc
    except smtplib.SMTPResponseException as exc:
        cls = SmtpTemporaryError if 400 <= exc.smtp_code < 500 else SmtpPermanentError
        raise cls(f"SMTP server answered {exc.smtp_code}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise SmtpPermanentError("SMTP server certificate not trusted: set the SMTP CA file "
                                 f"({exc.verify_message})") from exc
    except (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
        raise SmtpUnreachable(f"SMTP server {settings.host}:{settings.port} unreachable "
                                 f"({type(exc).__name__})") from exc
    except smtplib.SMTPException as exc:
        raise SmtpPermanentError(f"SMTP error ({type(exc).__name__})") from exc
