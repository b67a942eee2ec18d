"""Which public keys may sign licences.

Production trust roots are the vendor's public keys shipped inside the package
(``appliance/trust/*.pub``). Each key is found by its id, which is a hash of the
key (:func:`appliance.core.licence.format.key_id_for`), so the vendor rotates keys by
shipping one more ``.pub`` file and a file name can never claim another key's id.

``APPLIANCE_LICENCE_TRUST_ROOT`` (a ``.pub`` file or a directory of them) adds
keys for tests and vendor engineers. Licences they verify are marked
non-production so the UI and CLI say so plainly; a shipped key is never
downgraded by appearing there too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from appliance.core.licence.format import key_id_for

TRUST_ROOT_ENV = "APPLIANCE_LICENCE_TRUST_ROOT"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "trust"


class TrustRootError(RuntimeError):
    """A trust-root file cannot be used; the message names the file."""


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: Ed25519PublicKey
    production: bool
    source: str


def load_public_key_file(path: Path) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TrustRootError(f"Cannot read public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise TrustRootError(f"{path} is not an Ed25519 public key.")
    return key


def _pub_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("*.pub") if p.is_file())
    if path.is_file():
        return [path]
    raise TrustRootError(f"Trust root {path} does not exist.")


class TrustStore:
    def __init__(self, keys: dict[str, TrustedKey] | None = None):
        self.keys: dict[str, TrustedKey] = dict(keys or {})

    def add_path(self, path: Path, production: bool) -> None:
        for pub in _pub_files(path):
            key = load_public_key_file(pub)
            kid = key_id_for(key)
            existing = self.keys.get(kid)
            if existing is not None and existing.production:
                continue
            self.keys[kid] = TrustedKey(kid, key, production, str(pub))

    def get(self, key_id: str) -> TrustedKey | None:
        return self.keys.get(key_id)

    @property
    def non_production_in_use(self) -> bool:
        """True when any extra (non-shipped) root is loaded, whether or not a licence uses it."""
        return any(not k.production for k in self.keys.values())

    def describe(self) -> str:
        return ", ".join(
            f"{kid}{'' if k.production else ' (non-production)'}" for kid, k in sorted(self.keys.items())
        )

    @classmethod
    def load(cls, extra: str | os.PathLike | None = None, shipped_dir: Path | None = None) -> TrustStore:
        """Shipped keys plus the extra root (argument, else the environment variable)."""
        store = cls()
        shipped = shipped_dir or SHIPPED_DIR
        if shipped.is_dir():
            store.add_path(shipped, production=True)
        if extra is None:
            extra = os.environ.get(TRUST_ROOT_ENV) or None
        if extra:
            store.add_path(Path(extra), production=False)
        return store
