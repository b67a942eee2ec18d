"""Fetching new mail from an IMAP mailbox by UID.

Position in a mailbox is (UIDVALIDITY, last UID seen): UIDs only grow while UIDVALIDITY
stays the same, so "UID last+1:*" returns exactly the mail not yet seen, however long the
worker was away. A new UIDVALIDITY means the server renumbered the mailbox: start from the
beginning again (the per-channel Message-ID key keeps the mail already stored from being
stored twice). Never a date window: mail delivered late or while the worker was down would
fall outside it.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_BATCH = 50
_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")


class ImapError(RuntimeError):
    """The mailbox could not be read; the message names the setting to check."""


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    username: str
    password: str
    mailbox: str = "INBOX"
    security: str = "ssl"  # ssl | starttls | none (none: loopback or a trusted LAN only)
    ca_file: str = ""
    timeout: float = 30.0


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes


def _context(settings: ImapSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file or None)


def connect(settings: ImapSettings) -> imaplib.IMAP4:
    try:
        if settings.security == "ssl":
            conn = imaplib.IMAP4_SSL(settings.host, settings.port, ssl_context=_context(settings),
                                     timeout=settings.timeout)
        else:
            conn = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
            if settings.security == "starttls":
                conn.starttls(ssl_context=_context(settings))
        conn.login(settings.username, settings.password)
        return conn
    except imaplib.IMAP4.error as exc:
        raise ImapError(f"IMAP login to {settings.host}:{settings.port} refused: check the username "
                        f"and password ({_text(exc)})") from exc
    except (OSError, ssl.SSLError) as exc:
        raise ImapError(f"IMAP server {settings.host}:{settings.port} unreachable: check host, port "
                        f"and security ({type(exc).__name__}: {exc})") from exc


def _text(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def select(conn: imaplib.IMAP4, mailbox: str) -> int:
    """Select the mailbox read-only and return its UIDVALIDITY."""
    typ, _ = conn.select(_quote(mailbox), readonly=True)
    if typ != "OK":
        raise ImapError(f"IMAP mailbox {mailbox!r} cannot be opened: check the mailbox setting")
    typ, data = conn.response("UIDVALIDITY")
    if data and data[0]:
        return int(data[0])
    typ, data = conn.status(_quote(mailbox), "(UIDVALIDITY)")
    match = _UIDVALIDITY_RE.search(data[0] if data and data[0] else b"")
    if not match:
        raise ImapError(f"IMAP mailbox {mailbox!r} reports no UIDVALIDITY")
    return int(match.group(1))


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def new_uids(conn: imaplib.IMAP4, after_uid: int) -> list[int]:
    typ, data = conn.uid("SEARCH", None, f"UID {after_uid + 1}:*")
    if typ != "OK":
        raise ImapError("IMAP UID SEARCH failed")
    # "n:*" always matches the highest UID even when it is below n: filter it out.
    return sorted(u for u in (int(x) for x in (data[0] or b"").split()) if u > after_uid)


_FETCH_UID_RE = re.compile(rb"\bUID (\d+)")
FETCH_CHUNK = 25  # UIDs per FETCH command: one round trip for many mails, bounded memory


def fetch(conn: imaplib.IMAP4, uids: list[int]) -> dict[int, bytes]:
    """The raw mails of ``uids`` by UID (a mail expunged meanwhile is simply absent)."""
    found: dict[int, bytes] = {}
    for i in range(0, len(uids), FETCH_CHUNK):
        chunk = uids[i:i + FETCH_CHUNK]
        typ, data = conn.uid("FETCH", ",".join(str(u) for u in chunk), "(UID BODY.PEEK[])")
        if typ != "OK":
            raise ImapError(f"IMAP FETCH of UIDs {chunk[0]}-{chunk[-1]} failed")
        for item in data or []:
            if isinstance(item, tuple) and len(item) == 2:
                match = _FETCH_UID_RE.search(item[0])
                if match:
                    found[int(match.group(1))] = item[1]
    return found


def fetch_new(settings: ImapSettings, uidvalidity: int | None, last_uid: int,
              batch: int = DEFAULT_BATCH) -> tuple[int, Iterator[FetchedMail]]:
    """(UIDVALIDITY now, the mails after ``last_uid``, oldest first, at most ``batch``).

    The caller advances its stored position after handling each mail, so a crash in the
    middle re-reads at most the one mail being handled.
    """
    conn = connect(settings)
    try:
        current = select(conn, settings.mailbox)
        start = last_uid if uidvalidity == current else 0
        uids = new_uids(conn, start)[:batch]
        raw = fetch(conn, uids)
        return current, iter([FetchedMail(uid=uid, raw=raw[uid]) for uid in uids if uid in raw])
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
