"""The one interface every channel kind implements, and the values it passes around.

An adapter is stateless: what it needs (tokens, secrets, the provider's API base URL)
arrives as ``settings``, the channel's decrypted settings document, on every call.
Inbound requests are verified over the raw bytes before anything is parsed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from appliance.core import clock


@dataclass
class InboundFile:
    filename: str
    content_type: str
    data: bytes
    left_out: str | None = None  # why a file the message names was not fetched (the ingest says so in its text)


@dataclass
class Inbound:
    external_id: str  # the service's own id for the item: the de-duplication key per channel
    sender_id: str  # where replies go (chat id, phone number, peer id); "" when the kind has none
    text: str
    sender_name: str | None = None
    email: str | None = None
    phone: str | None = None
    files: list[InboundFile] = field(default_factory=list)
    subject: str | None = None
    thread_keys: list[str] = field(default_factory=list)  # e-mail: Message-IDs and the reply token


@dataclass
class Outbound:
    message_uid: str
    conversation_uid: str
    recipient_id: str
    text: str
    files: list[InboundFile] = field(default_factory=list)
    subject: str | None = None
    thread_keys: list[str] = field(default_factory=list)
    idempotency_key: str = ""


@dataclass
class Sent:
    external_id: str | None


# What a service reports about a reply it took: delivered to the device, read, or failed there.
DELIVERY_STATUSES = ("delivered", "read", "failed")


@dataclass
class DeliveryStatus:
    """A service's receipt for one of our replies, named by the id it gave the reply (``Sent.external_id``).

    ``up_to`` (VK): every reply to ``recipient_id`` with a numeric id up to ``external_id`` is meant.
    """

    external_id: str
    status: str  # one of DELIVERY_STATUSES
    reason: str | None = None  # the service's words for a failure
    recipient_id: str = ""
    up_to: bool = False


class Refused(Exception):
    """An inbound request that failed verification: answered with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class TemporaryFailure(Exception):
    """Worth trying again later (5xx, timeouts, 429); ``retry_after`` in seconds when the service said."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """Trying again will not help (bad token, unknown recipient): the message fails with ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SettingField:
    name: str
    label: str
    secret: bool = False
    required: bool = False
    default: str = ""
    generate: bool = False  # a secret the appliance makes when none is given (shown once)


# Every kind that sends has it: the installation's default (channels.rate_per_minute) applies when empty.
RATE_FIELD = SettingField("rate_per_minute", "Replies per minute at most (empty: the installation's default)")


class Adapter:
    """Base of every kind. Subclasses set ``kind`` and ``settings_fields`` and override what they support."""

    kind: str = ""
    settings_fields: tuple[SettingField, ...] = ()
    sends = True  # False: replies stay in the app (web chat is read by the widget)
    polls = False

    def verify(self, settings: dict, headers, raw_body: bytes, query) -> str | None:
        """Refused unless the request is the service's; PREVIOUS_SECRET when it was signed with
        the channel's rotated-out secret (still within its grace), else None."""
        raise Refused(404, "This channel does not accept posts.")

    def parse(self, settings: dict, headers, raw_body: bytes, query) -> list[Inbound]:
        return []

    def statuses(self, settings: dict, headers, raw_body: bytes, query) -> list[DeliveryStatus]:
        """Receipts for our replies in a verified post (kinds whose service sends none: [])."""
        return []

    def handshake(self, settings: dict, headers, raw_body: bytes, query):
        """A service's set-up request answered directly (a flask response), or None."""
        return

    def acknowledge(self, stored: list):
        """The answer to a verified post once its items are stored (a flask response), or None for JSON."""
        return

    def delivers(self, settings: dict) -> bool:
        """Do replies on a channel with these settings go out through the outbox?"""
        return self.sends

    def send(self, settings: dict, out: Outbound) -> Sent:
        raise PermanentFailure(f"{self.kind} channels do not deliver replies.")

    def poll(self, settings: dict, state: dict) -> tuple[list, dict]:
        """New items (``Inbound``, and ``DeliveryStatus`` receipts where the service has them) and the new state."""
        return [], state

    def test_connection(self, settings: dict) -> str:
        return "Nothing to test for this kind."


def same_secret(given: str | bytes | None, expected: str | bytes | None) -> bool:
    """Constant-time comparison; an unset expected secret matches nothing."""
    if not expected or given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


# What ``which_secret`` found signed a request.
CURRENT_SECRET, PREVIOUS_SECRET, EXPIRED_SECRET = "current", "previous", "expired"


def which_secret(secrets: dict, matches) -> str | None:
    """Which of a channel's signing secrets (``config.signing_secrets``) ``matches(secret)``:
    the current one, the one a rotation replaced while its grace lasts, the same after it
    (refused, but the sender can be told why), or None."""
    if secrets.get("channel_secret") and matches(secrets["channel_secret"]):
        return CURRENT_SECRET
    previous, until = secrets.get("channel_previous_secret"), secrets.get("channel_previous_until")
    if previous and until is not None and matches(previous):
        return PREVIOUS_SECRET if clock.naive_now() < until else EXPIRED_SECRET
    return None


def expired_secret_reason(secrets: dict) -> str:
    until = secrets["channel_previous_until"]
    return (f"signed with the channel's previous signing secret, which stopped verifying at "
            f"{until.isoformat(timespec='seconds')}Z after a rotation: sign with the new secret "
            "(the channel's admins have it).")


def json_document(raw: bytes) -> dict:
    """A service's JSON body as a dict, or Refused(400) saying what is wrong (never a traceback)."""
    import json

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        raise Refused(400, "The body is not valid JSON (UTF-8).") from None
    if not isinstance(data, dict):
        raise Refused(400, "The body must be a JSON object.")
    return data


def dig(data, *path, default=None):
    """``data[path0][path1]...`` for untrusted nested JSON, ``default`` where a step is missing or the wrong type."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or not -len(data) <= step < len(data):
                return default
        elif not isinstance(data, dict) or step not in data:
            return default
        data = data[step]
    return data
