"""The encryption key tables, listed with the other models (defined in webapp/crypto/tables.py).

Defined inside the crypto package so that importing webapp.crypto never
imports webapp.models (whose models import the crypto field types).
"""

from webapp.crypto.tables import CRYPTO_MODELS, CryptoMaster, KeyRotationJob, TenantKey

__all__ = ["CRYPTO_MODELS", "CryptoMaster", "KeyRotationJob", "TenantKey"]
