"""The offline bundle's checksums and signature: the vendor's Ed25519 key over its SHA256SUMS.

SHA256SUMS lists every wheel and manifest.json with its digest, so one signature
over its exact bytes covers the whole bundle; ``SHA256SUMS.sig`` beside it holds
that signature in plain ASCII::

    -----BEGIN APPLIANCE BUNDLE SIGNATURE-----
    Format: 1
    Key-Id: ed25519-0123456789abcdef

    <base64 of the 64-byte signature>
    -----END APPLIANCE BUNDLE SIGNATURE-----

The keys are the vendor's licence signing keys (``appliance/core/trust/*.pub``,
plus any extra root named on the command line), found by their id. The
message signed is domain-separated from licences, so a licence signature can
never pass for a bundle's or the other way round.

The installer's preflight runs ``python -m appliance.core.bundle_signature DIR``
on the control machine before any host is changed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import re
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.core.licence.format import key_id_for
from appliance.core.licence.trust import TrustedKey, TrustRootError, TrustStore

SUMS_FILE = "SHA256SUMS"
SIGNATURE_FILE = "SHA256SUMS.sig"
FORMAT_VERSION = 1
DOMAIN = b"appliance-bundle-signature\x00"
BEGIN_LINE = "-----BEGIN APPLIANCE BUNDLE SIGNATURE-----"
END_LINE = "-----END APPLIANCE BUNDLE SIGNATURE-----"
MAX_SIGNATURE_BYTES = 4096
SIGN_HINT = "the vendor signs bundles with `appliance vendor sign-bundle --key KEYID.key DIR`"


class BundleSignatureError(ValueError):
    """The bundle's signature is missing or does not hold; the message names the file and the fix."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_bundle(directory: Path) -> list[str]:
    """Problems found in a bundle (empty when it is intact)."""
    problems = []
    sums = directory / "SHA256SUMS"
    if not sums.exists():
        return [f"{sums} missing"]
    listed = set()
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed.add(name)
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: checksum mismatch")
    for wheel in directory.glob("*.whl"):
        if wheel.name not in listed:
            problems.append(f"{wheel.name}: not listed in SHA256SUMS")
    return problems


def signed_message(key_id: str, sums: bytes) -> bytes:
    kid = key_id.encode("ascii")
    return DOMAIN + struct.pack(">H", FORMAT_VERSION) + struct.pack(">H", len(kid)) + kid + sums


def sign_bundle(directory: Path, private_key: Ed25519PrivateKey) -> Path:
    """Write DIR/SHA256SUMS.sig for the SHA256SUMS there; returns its path."""
    sums_path = directory / SUMS_FILE
    if not sums_path.is_file():
        raise BundleSignatureError(f"{sums_path} is missing: sign a bundle made by `appliance bundle --out DIR`.")
    key_id = key_id_for(private_key.public_key())
    signature = private_key.sign(signed_message(key_id, sums_path.read_bytes()))
    text = "\n".join([BEGIN_LINE, f"Format: {FORMAT_VERSION}", f"Key-Id: {key_id}", "",
                      base64.b64encode(signature).decode("ascii"), END_LINE]) + "\n"
    out = directory / SIGNATURE_FILE
    out.write_text(text)
    return out


def _parse(path: Path) -> tuple[str, bytes]:
    data = path.read_bytes()
    if len(data) > MAX_SIGNATURE_BYTES:
        raise BundleSignatureError(f"{path} is {len(data)} bytes, too large for a signature: {SIGN_HINT}.")
    m = re.fullmatch(
        rf"{re.escape(BEGIN_LINE)}\nFormat: (\d+)\nKey-Id: ([A-Za-z0-9._-]{{1,64}})\n\n([A-Za-z0-9+/=]+)\n"
        rf"{re.escape(END_LINE)}\n?",
        data.decode("ascii", errors="replace"),
    )
    if not m:
        raise BundleSignatureError(f"{path} is not a bundle signature (damaged or another file): {SIGN_HINT}.")
    if int(m.group(1)) != FORMAT_VERSION:
        raise BundleSignatureError(f"{path} has signature format {m.group(1)}; this installer reads {FORMAT_VERSION}.")
    try:
        signature = base64.b64decode(m.group(3), validate=True)
    except binascii.Error as exc:
        raise BundleSignatureError(f"{path}: the signature is not valid base64: {SIGN_HINT}.") from exc
    return m.group(2), signature


def verify_bundle_signature(directory: Path, trust: TrustStore) -> TrustedKey:
    """The key that signed the bundle's SHA256SUMS, or BundleSignatureError saying why not."""
    sig_path, sums_path = directory / SIGNATURE_FILE, directory / SUMS_FILE
    if not sums_path.is_file():
        raise BundleSignatureError(f"{sums_path} is missing: {directory} is not a bundle.")
    if not sig_path.is_file():
        raise BundleSignatureError(
            f"{sig_path} is missing: the bundle is not signed. Install only a bundle signed by the vendor "
            f"({SIGN_HINT}; a site building its own signs with its own key and names the .pub in "
            "appliance_bundle_trust).")
    key_id, signature = _parse(sig_path)
    trusted = trust.get(key_id)
    if trusted is None:
        raise BundleSignatureError(
            f"{sig_path} is signed by key {key_id}, which is not trusted (trusted: {trust.describe() or 'none'}): "
            "use a bundle signed by the vendor's current key, or name the signer's .pub in appliance_bundle_trust.")
    try:
        trusted.public_key.verify(signature, signed_message(key_id, sums_path.read_bytes()))
    except InvalidSignature as exc:
        raise BundleSignatureError(
            f"{sums_path} does not match its signature {sig_path} (key {key_id}): the bundle was changed after "
            "it was signed. Copy it again from the vendor's media.") from exc
    return trusted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.core.bundle_signature",
                                     description="Check an offline bundle's signature (exit 0 when it holds).")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--trust", default="", help="Extra .pub file or directory of them (besides the shipped keys).")
    args = parser.parse_args(argv)
    try:
        # "" rather than None: the licence trust root's environment variable is not for bundles.
        trusted = verify_bundle_signature(args.bundle, TrustStore.load(extra=args.trust or ""))
    except (BundleSignatureError, TrustRootError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.bundle}: signed by {trusted.key_id} ({'shipped' if trusted.production else trusted.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
