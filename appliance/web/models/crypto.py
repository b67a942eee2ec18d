"""The encryption key tables, listed with the other models (defined in appliance/web/crypto/tables.py).

Defined inside the crypto package so that importing appliance.web.crypto never
imports appliance.web.models (whose models import the crypto field types).
"""

from appliance.web.crypto.tables import CRYPTO_MODELS, CryptoMaster, KeyRotationJob, TenantKey

__all__ = ["CRYPTO_MODELS", "CryptoMaster", "KeyRotationJob", "TenantKey"]
