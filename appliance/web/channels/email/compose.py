"""Building an outbound reply with the headers that keep a mail thread together."""

from __future__ import annotations

import secrets
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

MAX_REFERENCES = 20  # RFC 5322 lets clients trim References; the first and the newest matter


def new_message_id(domain: str) -> str:
    return f"<{secrets.token_hex(16)}@{domain}>"


def reply_address(address: str, token: str) -> str:
    """support@example.org + token → support+token@example.org (sub-addressing)."""
    local, _, domain = address.partition("@")
    return f"{local}+{token}@{domain}"


def build_reply(*, from_address: str, from_name: str | None, token: str, to: str, subject: str | None,
                text: str, message_id: str, in_reply_to: str | None, references: list[str],
                when, files=()) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = formataddr((from_name or "", from_address)) if from_name else from_address
    msg["Reply-To"] = reply_address(from_address, token)
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = _reply_subject(subject)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    refs = list(dict.fromkeys(references))
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1):]
    if refs:
        msg["References"] = " ".join(refs)
    msg.set_content(text)
    for f in files:
        maintype, _, subtype = (f.content_type or "application/octet-stream").partition("/")
        msg.add_attachment(f.data, maintype=maintype, subtype=subtype or "octet-stream", filename=f.filename)
    return msg


def _reply_subject(subject: str | None) -> str:
    subject = (subject or "").strip()
    if not subject:
        return "Re: your message"
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"
