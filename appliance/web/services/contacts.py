"""Contacts and exact-match search by e-mail or phone."""

from __future__ import annotations

import re

from appliance.web.models.contact_center import Contact
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError

LIMITS = {"name": 200, "email": 254, "phone": 40, "notes": 5000}


def normalise_email(value: str) -> str:
    return value.strip().casefold()


def normalise_phone(value: str) -> str:
    """E.164 when the number can be placed (see phone_default_country_code); else digits."""
    from appliance.web.crypto.blind_index import NormalisationError
    from appliance.web.crypto.blind_index import normalise_phone as e164

    try:
        return e164(value)
    except NormalisationError:
        pass
    raw = value.strip()
    digits = re.sub(r"[^\d]", "", raw)
    if raw.startswith("00"):
        digits = digits[2:]
    elif not raw.startswith("+"):
        return digits
    return "+" + digits


def _validate(fields: dict) -> dict:
    clean = {}
    for key, value in fields.items():
        if value is None:
            clean[key] = None
            continue
        if not isinstance(value, str):
            raise ServiceError(f"{key} must be a string.", 422)
        if len(value) > LIMITS[key]:
            raise ServiceError(f"{key} is limited to {LIMITS[key]} characters.", 422)
        value = value.strip()
        if key == "email" and value:
            if "@" not in value:
                raise ServiceError("email is not a valid e-mail address.", 422)
            value = normalise_email(value)
        if key == "phone" and value:
            value = normalise_phone(value)
            if len(re.sub(r"\D", "", value)) < 5:
                raise ServiceError("phone needs at least 5 digits.", 422)
        clean[key] = value or None
    return clean


def create_contact(tenant: Tenant, **fields) -> Contact:
    return Contact.create(tenant=tenant, **_validate(fields))


def update_contact(contact: Contact, **fields) -> Contact:
    for key, value in _validate(fields).items():
        setattr(contact, key, value)
    contact.save()
    return contact


def find_contacts(tenant: Tenant, *, email=None, phone=None):
    # e-mail and phone are encrypted: match through their keyed blind indexes
    # (appliance/web/crypto/blind_index.py normalises both sides the same way).
    query = Contact.select().where(Contact.tenant == tenant.id)
    if email:
        query = query.where(Contact.index_match(tenant.id, "email", email))
    if phone:
        query = query.where(Contact.index_match(tenant.id, "phone", phone))
    return query.order_by(Contact.id.desc())


SEARCH_TENANTS = 200  # a search over sub-accounts computes one blind index per tenant
SEARCH_MATCHES = 500


def search(tenants: list[Tenant], q: str) -> list[int]:
    """Ids of the contacts of ``tenants`` matching ``q`` exactly: an e-mail address, a phone
    number, or a whole name (case and spacing aside). All three are ciphertext, found
    through their keyed blind indexes (one per tenant key), then decrypted and compared;
    a part of a name finds nothing (the limitation of searching encrypted names)."""
    from appliance.web.crypto.blind_index import same

    q = (q or "").strip()[:254]
    if not q:
        return []
    sources = ("email",) if "@" in q else ("phone", "name")
    found = []
    for tenant in tenants[:SEARCH_TENANTS]:
        clause = None
        for source in sources:
            match = Contact.index_match(tenant.id, source, q)
            clause = match if clause is None else clause | match
        for contact in (Contact.select().where(Contact.tenant == tenant.id, clause)
                        .order_by(Contact.id.desc()).limit(SEARCH_MATCHES)):
            if any(same(source, getattr(contact, source), q) for source in sources):
                found.append(contact.id)
    return found[:SEARCH_MATCHES]


NAME_INDEX_BATCH = 500
UNINDEXABLE = b""  # a name that does not normalise, or failed its integrity check: never matches


def fill_name_index(batch: int = NAME_INDEX_BATCH) -> int:
    """Blind-index the names of contacts stored before names had one; how many this call did.

    Each row is written only while its index is still empty, so two workers at once do
    the same harmless work and a contact renamed meanwhile keeps the index its save made.
    """
    from appliance.web.crypto.blind_index import compute
    from appliance.web.crypto.fields import IntegrityFailed

    rows = list(Contact.select(Contact.id, Contact.tenant, Contact.uid, Contact.name)
                .where(Contact.name_bidx.is_null(), Contact.name.is_null(False)).limit(batch))
    for row in rows:
        name = row.name
        digest = None if type(name) is IntegrityFailed else compute(row.tenant_id, "name", name)
        (Contact.update(name_bidx=digest if digest is not None else UNINDEXABLE)
         .where(Contact.id == row.id, Contact.name_bidx.is_null()).execute())
    return len(rows)


def name_index_job(app) -> None:
    fill_name_index()
