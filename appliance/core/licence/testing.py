"""Throwaway signing keys and licences for tests and vendor engineers' labs.

Keys made here are never production trust roots: write the public half to a
directory and point ``APPLIANCE_LICENCE_TRUST_ROOT`` at it, and the appliance
will say that a non-production trust root is in use.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.core import clock
from appliance.core.licence.format import format_timestamp, key_id_for, sign_payload
from appliance.core.licence.trust import TrustedKey, TrustStore
from appliance.core.sizing import EMBEDDED, SIZED_PROFILES


class TestSigner:
    __test__ = False  # not a pytest class

    def __init__(self, key: Ed25519PrivateKey | None = None):
        self.key = key or Ed25519PrivateKey.generate()
        self.key_id = key_id_for(self.key.public_key())

    def write_public(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.key_id}.pub"
        path.write_bytes(self.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        return path

    def trusted(self, production: bool = False) -> TrustedKey:
        return TrustedKey(self.key_id, self.key.public_key(), production, "test")

    def store(self, production: bool = False) -> TrustStore:
        return TrustStore({self.key_id: self.trusted(production)})

    def issue(self, **fields) -> str:
        return sign_payload(payload(**fields), self.key)


def payload(now: datetime | None = None, days: int = 365, **fields) -> dict:
    """A valid payload from ``now`` for ``days``; keyword arguments override fields."""
    now = (now or clock.now()).replace(microsecond=0)
    base = {
        "licence_id": "LIC-TEST-1",
        "customer": "Test Customer",
        "issued_at": format_timestamp(now),
        "valid_from": format_timestamp(now),
        "expires_at": format_timestamp(now + timedelta(days=days)),
        "grace_days": 14,
        "max_tenants": 3,
        "max_seats": 4,
        "programs": ["webchat", "email", "api"],
        "profiles": [EMBEDDED, SIZED_PROFILES[0]],  # the default and the smallest sized profile
    }
    for key, value in fields.items():
        if isinstance(value, datetime):
            value = format_timestamp(value)
        base[key] = value
    return {k: v for k, v in base.items() if v is not None}
