"""Keyed blind indexes: exact-match search over encrypted phones and e-mails.

index = HMAC-SHA256(tenant index key, kind || 0x00 || normalised value)[:16]

The index key is separate from the data key, per tenant, so equal phones in
two tenants index differently and the index reveals nothing without the key.
Truncation to 128 bits keeps collisions negligible, and callers still decrypt
and compare the candidates (``EncryptedModel.find_by_index``).
"""

from __future__ import annotations

import re
import unicodedata

from appliance.web.crypto.keyring import get_keyring

INDEX_BYTES = 16

# The country calling code assumed for numbers typed without one (national
# format), and the national trunk prefix dropped before it ("0" in most of
# Europe, "8" in Russia, "1" in the NANP is not a trunk prefix: use "").
_settings = {"default_country_code": "", "trunk_prefix": "0"}

_SEPARATORS = re.compile(r"[\s\-().\/\u00a0\u2010-\u2015]")


class NormalisationError(ValueError):
    pass


def configure(default_country_code: str | None = None, trunk_prefix: str | None = None) -> None:
    if default_country_code is not None:
        cc = str(default_country_code).lstrip("+").strip()
        if cc and not (cc.isdigit() and 1 <= len(cc) <= 3):
            raise ValueError(f"country calling code must be 1-3 digits, got {default_country_code!r}")
        _settings["default_country_code"] = cc
    if trunk_prefix is not None:
        _settings["trunk_prefix"] = str(trunk_prefix)


def normalise_phone(value: str, default_country_code: str | None = None,
                    trunk_prefix: str | None = None) -> str:
    """E.164 (``+`` and 8-15 digits) from the ways people type numbers.

    ``+44 (20) 7946-0958``, ``0044 20 7946 0958`` and, with default country
    code 44, ``020 7946 0958`` all give ``+442079460958``.
    """
    cc = _settings["default_country_code"] if default_country_code is None else default_country_code
    trunk = _settings["trunk_prefix"] if trunk_prefix is None else trunk_prefix
    text = unicodedata.normalize("NFKC", str(value)).strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        digits = text[1:]
    elif text.startswith("00"):
        digits = text[2:]
    else:
        if not cc:
            raise NormalisationError(
                "number has no country code and no default country code is configured"
            )
        national = text[len(trunk):] if trunk and text.startswith(trunk) else text
        digits = cc + national
    if not digits.isdigit() or not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise NormalisationError("not a phone number")
    return "+" + digits


def phone_search_key(value: str) -> str:
    """E.164 when the number can be placed; otherwise its digits, marked as national.

    Sites without a default country code still find a contact by the same
    national number they stored ("030 1234567" and "0301234567" match).
    """
    try:
        return normalise_phone(value)
    except NormalisationError:
        digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", str(value)))
        if len(digits) < 5 or len(digits) > 17 or re.search(r"[^\d\s\-().\/+\u00a0]", str(value)):
            raise
        return "national:" + digits


def normalise_email(value: str) -> str:
    text = unicodedata.normalize("NFKC", str(value)).strip().casefold()
    if text.count("@") != 1 or text.startswith("@") or text.endswith("@") or " " in text:
        raise NormalisationError("not an e-mail address")
    return text


def normalise_text(value: str) -> str:
    return unicodedata.normalize("NFKC", str(value)).strip().casefold()


def normalise_name(value: str) -> str:
    """A person's whole name with case and spacing folded ("Ana  MARÍA" is "ana maría")."""
    text = " ".join(normalise_text(value).split())
    if not text:
        raise NormalisationError("empty name")
    return text


NORMALISERS = {"phone": phone_search_key, "email": normalise_email, "text": normalise_text,
               "name": normalise_name}


def compute(tenant_id: int, kind: str, value, keyring=None) -> bytes | None:
    """The index bytes, or None when the value does not normalise (nothing to match)."""
    if value is None:
        return None
    try:
        norm = NORMALISERS[kind](value)
    except NormalisationError:
        return None
    mac = (keyring or get_keyring()).index_key(tenant_id).hmac.copy()
    mac.update(kind.encode() + b"\x00" + norm.encode())
    return mac.digest()[:INDEX_BYTES]


def phone_index(tenant_id: int, value, keyring=None) -> bytes | None:
    return compute(tenant_id, "phone", value, keyring)


def email_index(tenant_id: int, value, keyring=None) -> bytes | None:
    return compute(tenant_id, "email", value, keyring)


def same(kind: str, a, b) -> bool:
    """Do two plaintexts normalise equal (used to confirm index candidates)?"""
    try:
        return NORMALISERS[kind](a) == NORMALISERS[kind](b)
    except (NormalisationError, TypeError):
        return False
