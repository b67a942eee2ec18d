"""The stored format of one encrypted value, and its associated data.

    byte 0      format version (1)
    bytes 1-4   key id, unsigned big-endian: picks the data key, no trial decryption
    bytes 5-16  random 96-bit nonce, fresh for every value
    bytes 17-   AES-256-GCM ciphertext and 16-byte tag

Raw bytes in a BLOB/bytea column (no base64). The associated data binds the
value to where it lives: header, tenant id, table, column and the row's uid
(a UUID set before insert). A ciphertext copied to another row, column or
tenant, or a header edited to point at another key, fails authentication.
"""

from __future__ import annotations

import os
import struct
import uuid

from cryptography.exceptions import InvalidTag

FORMAT_V1 = 1
HEADER = struct.Struct(">BI")
HEADER_LEN = HEADER.size
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN


class DecryptionFailed(Exception):
    """The value is not authentic where it is (tampered, moved, or damaged)."""

    def __init__(self, reason: str, key_id: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


def uid_bytes(uid) -> bytes:
    if isinstance(uid, uuid.UUID):
        return uid.bytes
    if isinstance(uid, bytes) and len(uid) == 16:
        return uid
    if uid is None:
        raise ValueError("an encrypted row needs its uid before it is saved")
    return uuid.UUID(str(uid)).bytes


def aad_prefix(tenant_id: int, table: str, column: str) -> bytes:
    return f"{int(tenant_id)}\x1f{table}\x1f{column}\x1f".encode()


def seal(aead, key_id: int, prefix: bytes, uid: bytes, plaintext: bytes) -> bytes:
    """Encrypt under an AESGCM object already built for ``key_id``."""
    header = HEADER.pack(FORMAT_V1, key_id)
    nonce = os.urandom(NONCE_LEN)
    return header + nonce + aead.encrypt(nonce, plaintext, header + prefix + uid)


def key_id_of(blob: bytes) -> int:
    if len(blob) < OVERHEAD or blob[0] != FORMAT_V1:
        raise DecryptionFailed("unknown format or truncated value")
    return HEADER.unpack_from(blob)[1]


def open_sealed(aead, prefix: bytes, uid: bytes, blob: bytes) -> bytes:
    """Decrypt a value whose key (from ``key_id_of``) the caller has looked up."""
    try:
        return aead.decrypt(blob[HEADER_LEN:HEADER_LEN + NONCE_LEN], blob[HEADER_LEN + NONCE_LEN:],
                            blob[:HEADER_LEN] + prefix + uid)
    except InvalidTag:
        raise DecryptionFailed("authentication failed", HEADER.unpack_from(blob)[1]) from None
