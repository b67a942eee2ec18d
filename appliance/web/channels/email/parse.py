"""Raw RFC 5322 mail → what a conversation shows: sender, threading keys, plain text, files.

Everything here is pure (bytes in, dataclass out) so it can be tested without a server.
A mail that cannot be read raises :class:`MailParseError`; the poller quarantines it and
goes on with the next one.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.errors import HeaderParseError, MessageDefect
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr

import nh3

MAX_FILES = 20
# support+<token>@domain: the token is url-safe base64 (see tokens in the email service)
TOKEN_RE = re.compile(r"\+([A-Za-z0-9_-]{16,64})@")
_MSGID_RE = re.compile(r"<[^<>\s]+>")
# Defects that mean the body or the headers could not be read, as opposed to harmless
# oddities (a missing MIME-Version) that real mailers produce every day.
_FATAL_DEFECTS = ("InvalidBase64", "StartBoundaryNotFound", "MultipartInvariantViolation",
                  "CloseBoundaryNotFound", "NoBoundaryInMultipart")


class MailParseError(ValueError):
    """The mail cannot be turned into a message; the reason is safe to show an admin."""


@dataclass
class MailFile:
    filename: str
    content_type: str
    data: bytes


@dataclass
class ParsedMail:
    message_id: str
    sender_email: str
    sender_name: str | None
    subject: str | None
    text: str
    # Message-IDs this mail answers (In-Reply-To first, then References newest first)
    references: list[str] = field(default_factory=list)
    # Reply tokens found in the addresses the mail was sent to
    tokens: list[str] = field(default_factory=list)
    files: list[MailFile] = field(default_factory=list)


def message_ids(value: str | None) -> list[str]:
    return _MSGID_RE.findall(value or "")


def parse_mail(raw: bytes) -> ParsedMail:
    if not raw or not raw.strip():
        raise MailParseError("the mail is empty")
    try:
        msg = message_from_bytes(raw, policy=policy.default)
        return _parse(msg, raw)
    except MailParseError:
        raise
    except (HeaderParseError, LookupError, UnicodeError, ValueError, TypeError, AttributeError) as exc:
        raise MailParseError(f"the mail could not be read ({type(exc).__name__})") from exc


def _parse(msg: EmailMessage, raw: bytes) -> ParsedMail:
    name, address = parseaddr(str(msg.get("From", "")))
    if not address or "@" not in address:
        raise MailParseError("the mail has no sender address (From header missing or unreadable)")
    fatal = [d for d in _defects(msg) if type(d).__name__.startswith(_FATAL_DEFECTS)]
    if fatal:
        raise MailParseError(f"the mail's MIME structure is broken ({type(fatal[0]).__name__})")
    message_id = (message_ids(msg.get("Message-ID")) or [None])[0]
    if message_id is None:
        # Without its own id a mail can still be answered; a digest of its bytes keeps the
        # re-delivery of the very same mail from becoming a second message.
        import hashlib

        message_id = f"<sha256-{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id>"
    in_reply_to = message_ids(msg.get("In-Reply-To"))
    references = list(reversed(message_ids(msg.get("References"))))
    refs = list(dict.fromkeys(in_reply_to + references))
    recipients = getaddresses([str(v) for h in ("To", "Cc", "Delivered-To", "X-Original-To")
                               for v in msg.get_all(h, [])])
    tokens = list(dict.fromkeys(m.group(1) for _, addr in recipients for m in [TOKEN_RE.search(addr + "@")]
                                if m))
    text, files = _body_and_files(msg)
    text = trim_quoted(text).strip()
    if not text and not files:
        raise MailParseError("the mail has neither a readable text body nor attachments")
    subject = str(msg.get("Subject", "") or "").strip() or None
    return ParsedMail(message_id=message_id, sender_email=address.strip().lower(),
                      sender_name=name.strip() or None, subject=subject, text=text or "(attachment)",
                      references=refs, tokens=tokens, files=files)


def _defects(msg: EmailMessage) -> list[MessageDefect]:
    found = []
    for part in msg.walk():
        found.extend(part.defects)
    return found


def _body_and_files(msg: EmailMessage) -> tuple[str, list[MailFile]]:
    files = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        if (part.get_content_disposition() in ("attachment", "inline") and part.get_filename()
                and len(files) < MAX_FILES):
                data = part.get_payload(decode=True) or b""
                files.append(MailFile(filename=_safe_filename(part.get_filename()),
                                      content_type=part.get_content_type(), data=data))
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return "", files
    content = body.get_content()
    if body.get_content_type() == "text/html":
        content = html_to_text(content)
    return content, files


def _safe_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().strip(".") or "attachment"
    return re.sub(r"[\x00-\x1f]", "", name)[:200]


_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/li|/tr|/h[1-6]|/blockquote)\b[^>]*>")


def html_to_text(markup: str) -> str:
    """HTML mail as plain text: every tag dropped by nh3 (scripts and styles with their
    content), so nothing remote is fetched and nothing runs; entities decoded once."""
    markup = re.sub(r"(?is)<blockquote[^>]*>.*</blockquote>", "\n", markup)  # quoted history
    markup = _BLOCK_END.sub("\n", markup)
    text = nh3.clean(markup, tags=set(), clean_content_tags={"script", "style", "head", "title"})
    text = html.unescape(text)
    text = re.sub(r"[ \t\xa0]+", " ", text)
    return re.sub(r"\n\s*\n\s*\n+", "\n\n", text)


_QUOTE_HEADERS = (
    re.compile(r"^\s*On .{1,300}wrote:\s*$", re.S),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^\s*Am .{1,300}schrieb .{0,200}:\s*$", re.S),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),  # Outlook
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook's rule above "From: ..."
    re.compile(r"^\s*From: .+$"),
)


def trim_quoted(text: str) -> str:
    """The new part of a reply: cut at the first quote header or run of '>' lines."""
    lines = text.replace("\r\n", "\n").split("\n")
    kept = []
    for i, line in enumerate(lines):
        two = line + " " + (lines[i + 1] if i + 1 < len(lines) else "")
        if line.lstrip().startswith(">"):
            break
        if any(p.match(line) for p in _QUOTE_HEADERS) or (
                line.strip() and _QUOTE_HEADERS[0].match(two) and i + 1 < len(lines)
                and lines[i + 1].rstrip().endswith("wrote:")):
            # "From:" alone starts a quote only when it is followed by more header lines
            if line.lstrip().startswith("From: ") and not _header_block_follows(lines, i):
                kept.append(line)
                continue
            break
        kept.append(line)
    return "\n".join(kept).rstrip()


def _header_block_follows(lines: list[str], i: int) -> bool:
    nxt = [ln for ln in lines[i + 1:i + 4] if ln.strip()]
    return any(re.match(r"^\s*(Sent|Date|To|Subject):", ln) for ln in nxt)
