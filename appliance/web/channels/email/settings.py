"""An e-mail channel's settings: the fields, their checks, and the IMAP/SMTP settings
built from the stored document (the channel layer stores every value as text)."""

from __future__ import annotations

from appliance.web.channels.base import RATE_FIELD, SettingField
from appliance.web.channels.email import imap, smtp
from appliance.web.services import ServiceError

SECURITY = ("ssl", "starttls", "none")
FIELDS = (
    SettingField("from_address", "Address customers write to (e.g. support@example.org)", required=True),
    SettingField("from_name", "Sender name on replies"),
    SettingField("imap_host", "IMAP server", required=True),
    SettingField("imap_port", "IMAP port", default="993"),
    SettingField("imap_security", "IMAP security: ssl, starttls or none", default="ssl"),
    SettingField("imap_username", "IMAP username", required=True),
    SettingField("imap_password", "IMAP password", secret=True, required=True),
    SettingField("imap_mailbox", "IMAP mailbox", default="INBOX"),
    SettingField("imap_ca_file", "CA file for the IMAP server (empty: the system's CAs)"),
    SettingField("smtp_host", "SMTP submission server", required=True),
    SettingField("smtp_port", "SMTP port", default="587"),
    SettingField("smtp_security", "SMTP security: starttls, ssl or none", default="starttls"),
    SettingField("smtp_username", "SMTP username"),
    SettingField("smtp_password", "SMTP password", secret=True),
    SettingField("smtp_ca_file", "CA file for the SMTP server (empty: the system's CAs)"),
    RATE_FIELD,
)
NAMES = tuple(f.name for f in FIELDS)
SECRETS = frozenset(f.name for f in FIELDS if f.secret)


def as_stored(values: dict) -> dict:
    """Check what an admin sent and return it as the channel layer stores it (text)."""
    if not isinstance(values, dict):
        raise ServiceError("e-mail settings must be an object.", 422)
    unknown = sorted(set(values) - set(NAMES))
    if unknown:
        raise ServiceError(f"unknown e-mail setting: {unknown[0]}; known: {', '.join(NAMES)}.", 422)
    out = {}
    for name, value in values.items():
        if value is None:
            value = ""
        if name.endswith("_port"):
            try:
                port = int(value)
            except (TypeError, ValueError):
                raise ServiceError(f"{name} must be a port number (1-65535).", 422) from None
            if not 0 < port < 65536:
                raise ServiceError(f"{name} must be a port number (1-65535).", 422)
            value = str(port)
        elif not isinstance(value, str):
            raise ServiceError(f"{name} must be text.", 422)
        value = value.strip()
        if name.endswith("_security") and value not in SECURITY:
            raise ServiceError(f"{name} must be one of: {', '.join(SECURITY)}.", 422)
        if name == "from_address" and value.count("@") != 1:
            raise ServiceError("from_address must be an e-mail address (local@domain).", 422)
        out[name] = value
    return out


def problem(settings: dict) -> str | None:
    """What is wrong with stored settings (the channel layer stores any text), or None."""
    try:
        as_stored({k: v for k, v in settings.items() if k in NAMES and k != RATE_FIELD.name})
    except ServiceError as exc:
        return str(exc)
    return None


def configured(settings: dict) -> bool:
    return bool(settings.get("imap_host") and settings.get("from_address"))


def imap_settings(settings: dict, timeout: float = 30.0) -> imap.ImapSettings:
    return imap.ImapSettings(host=settings["imap_host"], port=int(settings.get("imap_port") or 993),
                             username=settings.get("imap_username", ""),
                             password=settings.get("imap_password", ""),
                             mailbox=settings.get("imap_mailbox") or "INBOX",
                             security=settings.get("imap_security") or "ssl",
                             ca_file=settings.get("imap_ca_file", ""), timeout=timeout)


def smtp_settings(settings: dict, timeout: float = 30.0) -> smtp.SmtpSettings:
    return smtp.SmtpSettings(host=settings.get("smtp_host", ""), port=int(settings.get("smtp_port") or 587),
                             username=settings.get("smtp_username", ""),
                             password=settings.get("smtp_password", ""),
                             security=settings.get("smtp_security") or "starttls",
                             ca_file=settings.get("smtp_ca_file", ""), timeout=timeout)
