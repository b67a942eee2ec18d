"""The installation's identity: a random id and an Ed25519 key pair.

The vendor knows an installation only by this id and its public key (registered
by a vendor engineer); every sync report and export file is signed with the
private key, so the vendor can tell a genuine report from a forged or altered one
without any shared secret. The key never leaves ``HOME/keys``.

Both files are created once by ``appliance init`` and never overwritten:
replacing the key would orphan the installation at the vendor (its registered
public key would no longer match), so a lost key is a support case, not
something a re-run of ``init`` should paper over.
"""

from __future__ import annotations

import base64
import hashlib
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.core.config import write_secret_file

KEY_FILE = "keys/installation.key"
ID_FILE = "keys/installation.id"


class IdentityError(RuntimeError):
    """The installation identity is missing or unusable; the message says what to do."""


@dataclass(frozen=True)
class Identity:
    installation_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_key_pem(self) -> str:
        return public_key_pem(self.public_key)

    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte secret for one ``purpose``, derived from the private key (HKDF-SHA256).

        Keys that must live outside the database (the audit chain's, the licence
        clock's) come from here: whoever can read the database but not
        ``keys/installation.key`` cannot recompute them, and each purpose gets its own.
        """
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"appliance/" + purpose.encode("ascii")).derive(raw)


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(data: str | bytes) -> Ed25519PublicKey:
    """Parse a PEM public key (what ``sync identity`` prints); only Ed25519 is accepted."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    # Accept the block inside surrounding text (an e-mail, 'sync identity' output).
    begin, end = "-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----"
    if begin in data and end in data:
        data = data[data.index(begin) : data.index(end) + len(end)]
    try:
        key = serialization.load_pem_public_key(data.strip().encode("ascii") + b"\n")
    except ValueError as exc:
        raise IdentityError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise IdentityError("the public key is not an Ed25519 key")
    return key


def fingerprint(key: Ed25519PublicKey) -> str:
    """Short, human-comparable digest of a public key (read aloud on a support call)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).digest()[:15]
    return "SHA256:" + base64.b32encode(digest).decode("ascii").lower()


def _paths(home: Path) -> tuple[Path, Path]:
    return home / KEY_FILE, home / ID_FILE


def _home(instance) -> Path:
    return Path(getattr(instance, "home", instance))


def ensure_identity(instance) -> bool:
    """Create the installation id and key pair if absent; return True when anything was created.

    Idempotent, so ``appliance init`` may call it on every run. Each file is
    checked separately and an existing one is never replaced.
    """
    key_path, id_path = _paths(_home(instance))
    created = False
    if not key_path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        created |= write_secret_file(key_path, pem)
    if not id_path.exists():
        created |= write_secret_file(id_path, (str(uuid.uuid4()) + "\n").encode("ascii"))
    return created


def load_identity(instance) -> Identity:
    """Read the identity; refuse a key file others can read (it signs in our name)."""
    home = _home(instance)
    key_path, id_path = _paths(home)
    if not key_path.exists() or not id_path.exists():
        raise IdentityError(
            f"No installation identity in {key_path.parent}: run 'appliance --home {home} init'."
        )
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"{key_path} is readable by group/others (mode {mode:o}); run 'chmod 600 {key_path}'."
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except PermissionError:
        raise IdentityError(
            f"{key_path} cannot be read: permission denied. Run as the service user, or give that user "
            f"the file ('chown SERVICE_USER {key_path}; chmod 600 {key_path}')."
        ) from None
    except ValueError as exc:
        raise IdentityError(f"{key_path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{key_path} does not hold an Ed25519 key")
    raw_id = id_path.read_text(encoding="ascii", errors="replace").strip()
    try:
        installation_id = str(uuid.UUID(raw_id))
    except ValueError as exc:
        raise IdentityError(f"{id_path} does not hold a UUID") from exc
    return Identity(installation_id=installation_id, private_key=key)
