"""The master key: where it comes from, how it is named, how it is recovered.

The master key only wraps the per-tenant data keys (see keyring.py); it never
touches row data and never enters the database. Three sources, first wins:

1. ``APPLIANCE_MASTER_KEY`` in the environment (base64 of 32 bytes), for
   secret managers and containers;
2. a passphrase (setting ``master_key_source: passphrase``), stretched with
   scrypt and the salt file ``master_key_salt_file``; the passphrase comes from
   ``APPLIANCE_MASTER_PASSPHRASE`` or is typed at the prompt of a command;
3. the key file ``master_key_file`` (0600; its default path is in appliance.core.config).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.core.config import ConfigError, write_secret_file

KEY_BYTES = 32
ENV_KEY = "APPLIANCE_MASTER_KEY"
ENV_PASSPHRASE = "APPLIANCE_MASTER_PASSPHRASE"
KEY_FILE_PREFIX = "appliance-master-key-v1:"
# scrypt cost: ~0.6 s and 128 MiB once per boot or recovery; tests lower it.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1


class MasterKeyError(ConfigError):
    """The master key is missing, malformed or not the one the database needs.

    A ConfigError, so every command that loads the instance turns it into a
    clean message instead of a traceback.
    """


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)
    source: str  # "file", "env" or "passphrase"
    path: Path | None = None  # the key file, or the salt file for a passphrase

    @property
    def key_id(self) -> str:
        return master_key_id(self.key)

    def describe(self) -> str:
        if self.source == "env":
            return f"the {ENV_KEY} environment variable"
        if self.source == "passphrase":
            return f"the passphrase (salt file {self.path})"
        return f"the key file {self.path}"


def master_key_id(key: bytes) -> str:
    """A public name for a key: a digest of a key-check value, never the key."""
    check = hmac.new(key, b"appliance master key check v1", hashlib.sha256).digest()
    return hashlib.sha256(check).hexdigest()[:16]


def key_file_path(instance) -> Path:
    return instance.path(instance["master_key_file"])


def pending_path(path: Path) -> Path:
    """Where a master key rotation puts the new key (or salt) file before it takes over."""
    return path.with_name(path.name + ".new")


def salt_file_path(instance) -> Path:
    return instance.path(instance["master_key_salt_file"])


def key_source(instance) -> str:
    if os.environ.get(ENV_KEY):
        return "env"
    if instance["master_key_source"] == "passphrase":
        return "passphrase"
    return "file"


def encode_key_file(key: bytes) -> bytes:
    return (KEY_FILE_PREFIX + base64.b64encode(key).decode() + "\n").encode()


def parse_key_text(text: str, what: str) -> bytes:
    text = text.strip()
    text = text.removeprefix(KEY_FILE_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"{what} does not hold a master key (expected base64 of {KEY_BYTES} bytes)."
        )
    return key


def _missing_key_message(instance, path: Path) -> str:
    home = instance.home
    return (
        f"Master key file {path} not found; encrypted data cannot be read without it. "
        f"New instance: run 'appliance --home {home} init'. Restored or moved instance: "
        f"copy the key file from your key backup to {path} (mode 0600, owned by the "
        f"service user), or rebuild it from a recovery kit with "
        f"'appliance --home {home} keys import-recovery KIT'."
    )


def read_key_file(instance, path: Path | None = None) -> MasterKey:
    path = path or key_file_path(instance)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MasterKeyError(_missing_key_message(instance, path)) from None
    except PermissionError:
        raise MasterKeyError(_unreadable_key_message(path)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"Master key file {path} is readable by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); run 'chmod 600 {path}' and start again."
        )
    try:
        text = path.read_text()
    except PermissionError:
        raise MasterKeyError(_unreadable_key_message(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(
            f"Master key file {path} cannot be read ({exc}): restore it from your key backup."
        ) from None
    return MasterKey(parse_key_text(text, f"Master key file {path}"), "file", path)


def _unreadable_key_message(path: Path) -> str:
    return (
        f"Master key file {path} cannot be read: permission denied. Run the command as the service "
        f"user, or give that user the file ('chown SERVICE_USER {path}; chmod 600 {path}'; its "
        f"directory {path.parent} needs 'chmod 700' and the same owner)."
    )


def load_master_key(instance, passphrase: str | None = None) -> MasterKey:
    """The master key from its configured source; raises MasterKeyError saying what to do."""
    source = key_source(instance)
    if source == "env":
        return MasterKey(parse_key_text(os.environ[ENV_KEY], f"${ENV_KEY}"), "env")
    if source == "passphrase":
        salt_path = salt_file_path(instance)
        if passphrase is None:
            passphrase = os.environ.get(ENV_PASSPHRASE)
        if not passphrase:
            raise MasterKeyError(
                f"This instance derives its master key from a passphrase: set "
                f"{ENV_PASSPHRASE} for the service (or type it when a command asks)."
            )
        if not salt_path.exists():
            raise MasterKeyError(
                f"Salt file {salt_path} not found: restore it from your key backup, or run "
                f"'appliance --home {instance.home} init' on a new instance."
            )
        return MasterKey(derive_from_passphrase(passphrase, salt_path), "passphrase", salt_path)
    return read_key_file(instance)


def new_salt_document(n: int | None = None) -> bytes:
    n = n or SCRYPT_N
    doc = {"kdf": "scrypt", "n": n, "r": SCRYPT_R, "p": SCRYPT_P,
           "salt": base64.b64encode(secrets.token_bytes(16)).decode()}
    return (json.dumps(doc) + "\n").encode()


def derive_from_passphrase(passphrase: str, salt_path: Path) -> bytes:
    doc = json.loads(salt_path.read_text())
    return _scrypt(passphrase, base64.b64decode(doc["salt"]), doc["n"], doc["r"], doc["p"])


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode())


def ensure_master_key(instance) -> bool:
    """Create the key file (or the passphrase salt) once; never replace one.

    Called by ``appliance init``. Returns True when something was created.
    Environment-provided keys are the operator's to manage: nothing to do.
    """
    source = key_source(instance)
    if source == "env":
        return False
    path = salt_file_path(instance) if source == "passphrase" else key_file_path(instance)
    if pending_path(path).exists():
        # A master key rotation stopped half-way: opening the key ring finishes it with
        # that file; a fresh key here would only be retired again.
        return False
    if source == "passphrase":
        return write_secret_file(path, new_salt_document())
    return write_secret_file(path, encode_key_file(AESGCM.generate_key(256)))


def generate_key() -> bytes:
    return AESGCM.generate_key(256)


# -- recovery kit -------------------------------------------------------------

KIT_BEGIN = "-----BEGIN APPLIANCE MASTER KEY RECOVERY KIT-----"
KIT_END = "-----END APPLIANCE MASTER KEY RECOVERY KIT-----"


def export_recovery_kit(master: MasterKey, passphrase: str, label: str = "",
                        n: int | None = None) -> str:
    """Armoured text holding the master key sealed under a passphrase.

    The headers are bound as associated data, so editing the key id or the
    KDF parameters makes the kit fail to open rather than mislead.
    """
    if len(passphrase) < 12:
        raise ValueError("Use a recovery passphrase of at least 12 characters.")
    n = n or SCRYPT_N
    salt = secrets.token_bytes(16)
    headers = [
        ("Master-Key-Id", master.key_id),
        ("Instance", label.replace("\n", " ")),
        ("KDF", f"scrypt n={n} r={SCRYPT_R} p={SCRYPT_P}"),
        ("Salt", base64.b64encode(salt).decode()),
    ]
    head = "".join(f"{k}: {v}\n" for k, v in headers)
    kek = _scrypt(passphrase, salt, n, SCRYPT_R, SCRYPT_P)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(kek).encrypt(nonce, master.key, head.encode())
    body = base64.b64encode(nonce + sealed).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([KIT_BEGIN, head.rstrip("\n"), "", *lines, KIT_END]) + "\n"


def open_recovery_kit(text: str, passphrase: str) -> bytes:
    """The master key from a kit; MasterKeyError if the kit or passphrase is wrong."""
    try:
        inner = text.split(KIT_BEGIN, 1)[1].split(KIT_END, 1)[0].strip("\n")
        head_text, body = inner.split("\n\n", 1)
        head = head_text + "\n"
        fields = dict(line.split(": ", 1) for line in head_text.splitlines())
        params = dict(part.split("=") for part in fields["KDF"].split()[1:])
        salt = base64.b64decode(fields["Salt"])
        blob = base64.b64decode("".join(body.split()))
    except (IndexError, KeyError, ValueError, binascii.Error):
        raise MasterKeyError("This is not an appliance recovery kit (damaged or truncated).") from None
    kek = _scrypt(passphrase, salt, int(params["n"]), int(params["r"]), int(params["p"]))
    try:
        key = AESGCM(kek).decrypt(blob[:12], blob[12:], head.encode())
    except InvalidTag:
        raise MasterKeyError("Wrong recovery passphrase, or the kit was altered.") from None
    if master_key_id(key) != fields.get("Master-Key-Id"):
        raise MasterKeyError("The recovery kit's key does not match its Master-Key-Id header.")
    return key
