"""Vendor-signed licences: the file format, trust roots and the state they put the appliance in.

Nothing here touches the network or the database; ``appliance.web.services.licence`` stores
licences and enforces the limits, ``appliance.vendor_tools.cli`` issues them.
"""

from appliance.core.licence.format import (
    FORMAT_VERSION,
    MAX_LICENCE_BYTES,
    Licence,
    LicenceError,
    key_id_for,
    sign_payload,
    verify_licence,
)
from appliance.core.licence.trust import TRUST_ROOT_ENV, TrustRootError, TrustStore

__all__ = [
    "FORMAT_VERSION",
    "MAX_LICENCE_BYTES",
    "TRUST_ROOT_ENV",
    "Licence",
    "LicenceError",
    "TrustRootError",
    "TrustStore",
    "key_id_for",
    "sign_payload",
    "verify_licence",
]
