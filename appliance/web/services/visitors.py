"""Who a web-chat visitor is: unverified by default, verified only by proof.

An anonymous visitor can type any name and e-mail. Taking that at its word would attach
their message to the real customer with that address, so a visitor's claims stay on a
contact of their own, marked unverified (``Contact.verified``), until either

- the customer's site vouches for them: for its logged-in customers it signs an identity
  token with the channel's signing secret (``identity`` in the widget's message), or
- an agent who has checked merges the visitor contact into the right one, by hand.

The identity token is ``<payload>.<mac>``: ``payload`` is base64url (no padding) of the
JSON ``{"email": ..., "name": ..., "exp": <unix seconds>}``, and ``mac`` the hex
HMAC-SHA256 of the payload's characters under the channel's signing secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from appliance.core import clock
from appliance.web.channels import config as channel_config
from appliance.web.channels.base import EXPIRED_SECRET, PREVIOUS_SECRET, expired_secret_reason, which_secret
from appliance.web.db import write_transaction
from appliance.web.models.audit import record
from appliance.web.models.contact_center import Channel, Contact, Conversation
from appliance.web.models.tenancy import Tenant
from appliance.web.services import ServiceError, catalogue
from appliance.web.services.contacts import create_contact, find_contacts

IDENTITY_MAX = 2000


def sign_identity(secret: str, *, email: str, name: str | None = None, exp: int) -> str:
    """The token a customer's site would make (the same steps in any language)."""
    payload = base64.urlsafe_b64encode(json.dumps({"email": email, "name": name, "exp": exp}).encode())
    payload = payload.rstrip(b"=").decode("ascii")
    return f"{payload}.{_mac(secret, payload)}"


def _mac(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode("ascii"), hashlib.sha256).hexdigest()


def verified_identity(channel: Channel, token: str) -> dict:
    """The e-mail and name the site vouches for; ServiceError 403 for a token that does not prove it."""
    refused = ServiceError("identity is not a valid identity token for this channel (signed with its "
                           "signing secret, not expired).", 403)
    if not isinstance(token, str) or len(token) > IDENTITY_MAX or token.count(".") != 1:
        raise refused
    payload, given = token.split(".")
    try:
        payload.encode("ascii")
    except UnicodeEncodeError:
        raise refused from None
    given_bytes = given.encode("ascii", "replace")
    secrets = channel_config.signing_secrets(channel)
    used = which_secret(secrets, lambda secret: hmac.compare_digest(given_bytes, _mac(secret, payload).encode()))
    if used == EXPIRED_SECRET:
        raise ServiceError("identity is " + expired_secret_reason(secrets), 403)
    if used is None:
        raise refused
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        raise refused from None
    if not isinstance(data, dict) or not isinstance(data.get("email"), str) or not isinstance(data.get("exp"), int):
        raise refused
    if data["exp"] <= clock.now().timestamp():
        raise refused
    name = data.get("name") if isinstance(data.get("name"), str) else None
    if used == PREVIOUS_SECRET:
        catalogue.previous_secret_used(channel)
    return {"email": data["email"], "name": name}


def contact_for_visitor(channel: Channel, tenant: Tenant, *, name=None, email=None, identity=None) -> Contact:
    """A verified contact for a vouched-for visitor; a fresh unverified one for anyone else."""
    if identity:
        claims = verified_identity(channel, identity)
        found = find_contacts(tenant, email=claims["email"]).where(Contact.verified == True).first()
        return found or create_contact(tenant, name=claims["name"], email=claims["email"])
    contact = create_contact(tenant, name=name, email=email)
    contact.verified = False
    contact.save(only=[Contact.verified])
    return contact


def merge(source: Contact, target: Contact, *, actor_id=None) -> Contact:
    """An agent's decision: ``source`` (a visitor) is ``target``; its conversations move over."""
    if source.id == target.id:
        raise ServiceError("A contact cannot be merged into itself.", 422)
    if source.tenant_id != target.tenant_id:
        raise ServiceError("into must be a contact of the same tenant.", 422)
    if source.verified:
        raise ServiceError("Only unverified visitor contacts can be merged into another contact.", 409)
    with write_transaction():
        moved = Conversation.update(contact=target.id).where(Conversation.contact == source.id).execute()
        source.delete_instance()
        record("contact.merge", actor_id=actor_id, tenant_id=target.tenant_id, target=f"contact:{target.id}",
               source=source.id, conversations=moved)
    return target
