"""Rules that take secrets and personal data out of text before it leaves the host (support bundles).

Two kinds: settings whose *name* says they are secret lose their value; free text
(log lines, check details) loses anything *shaped* like personal data or a
credential. Each rule is a (name, pattern, replacement) row, tested one by one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"(pass(word|phrase)?|secret|token|api[_-]?key|private|credential|dsn)", re.I)

TEXT_RULES: list[tuple[str, re.Pattern, str]] = [
    # user:password@ inside any URL
    ("url-credentials", re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@"), r"\1<redacted>@"),
    # a whole header value: "Authorization: Bearer x", "Cookie: a=b; c=d"
    ("auth-header", re.compile(r"(?im)\b(authorization|proxy-authorization|cookie|set-cookie)\s*:.*$"),
     r"\1: <redacted>"),
    ("credential", re.compile(r"(?i)\b(bearer|token|password|passwd|secret|api[_-]?key)"
                                 r"(\s*[:=]\s*|\s+)(\"[^\"]*\"|'[^']*'|\S+)"), r"\1\2<redacted>"),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    ("ipv6", re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b"), "<ip>"),
    ("ipv4", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ip>"),
    # 7+ digits with the usual separators: phone numbers, IBAN/card-like numbers
    ("phone-or-number", re.compile(r"(?<![\w.])\+?\d[\d \-/().]{5,}\d(?![\w.])"), "<number>"),
    # long opaque strings: keys, tokens, session ids
    ("opaque", re.compile(r"\b[A-Za-z0-9+/_-]{32,}={0,2}"), "<opaque>"),
]


def scrub_text(text: str) -> str:
    for _name, pattern, replacement in TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def strip_url_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{netloc}"))


def redact_settings(value, name: str = ""):
    """A copy of a settings tree with secret values replaced; paths to key files are kept."""
    if isinstance(value, dict):
        return {k: redact_settings(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_settings(v, name) for v in value]
    if name.endswith("_file") or name.endswith("_globs"):
        return value  # where a secret lives, not the secret
    if _SECRET_NAME.search(name) and value not in ("", None, False):
        return REDACTED
    if isinstance(value, str) and "://" in value:
        return strip_url_password(value)
    return value
