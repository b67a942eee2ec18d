"""``appliance vendor``: jobs that run at the vendor, never on a customer's appliance.

The signing key's private half stays with the vendor, encrypted with a
passphrase; only public keys ship in ``appliance/trust/``. Other vendor-side
commands (the sync receiver) attach to the same ``vendor`` group.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path

import click
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from appliance.core import clock
from appliance.core.bundle_signature import BundleSignatureError, sign_bundle, verify_bundle, verify_bundle_signature
from appliance.core.licence.format import (
    FIELDS,
    LicenceError,
    coerce_timestamp,
    format_timestamp,
    key_id_for,
    sign_payload,
    verify_licence,
)
from appliance.core.licence.trust import TrustedKey, TrustStore
from appliance.vendor_tools.receiver.cli import COMMANDS as RECEIVER_COMMANDS

PASSPHRASE_ENV = "APPLIANCE_VENDOR_PASSPHRASE"
MIN_PASSPHRASE = 12
DEFAULT_GRACE_DAYS = 30


def _passphrase(passphrase_file: str | None, confirm: bool) -> bytes:
    """From --passphrase-file, else the environment, else a hidden prompt."""
    if passphrase_file:
        text = Path(passphrase_file).read_text().rstrip("\r\n")
    elif os.environ.get(PASSPHRASE_ENV):
        text = os.environ[PASSPHRASE_ENV]
    else:
        text = click.prompt("Signing key passphrase", hide_input=True, confirmation_prompt=confirm)
    if confirm and len(text) < MIN_PASSPHRASE:
        raise click.ClickException(f"The passphrase must be at least {MIN_PASSPHRASE} characters.")
    if not text:
        raise click.ClickException("An empty passphrase cannot unlock a signing key.")
    return text.encode("utf-8")


def _write_new(path: Path, data: bytes, mode: int, force: bool = False) -> None:
    if path.exists() and not force:
        raise click.ClickException(f"{path} already exists; not overwriting it.")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def public_key_pem(private_key: Ed25519PrivateKey, created: datetime) -> bytes:
    public = private_key.public_key()
    header = (
        "# Appliance licence signing key (public half). Ship in appliance/trust/.\n"
        f"# Key id: {key_id_for(public)}\n# Created: {format_timestamp(created)}\n"
    )
    return header.encode() + public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@click.group()
def vendor():
    """Vendor-side jobs: licence signing keys and licences."""


@vendor.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the key pair.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False),
              help=f"Else env {PASSPHRASE_ENV}, else a prompt.")
def keygen(out_dir, passphrase_file):
    """Create an Ed25519 licence signing key pair.

    Writes KEYID.key (private, passphrase-encrypted, mode 0600: keep it at the
    vendor, never in a repository or bundle) and KEYID.pub (ship it in
    appliance/trust/).
    """
    passphrase = _passphrase(passphrase_file, confirm=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    kid = key_id_for(key.public_key())
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    _write_new(out / f"{kid}.key", private_pem, 0o600)
    _write_new(out / f"{kid}.pub", public_key_pem(key, clock.now()), 0o644)
    click.echo(f"Key id: {kid}")
    click.echo(f"Private key: {out / (kid + '.key')} (keep it secret; it signs licences)")
    click.echo(f"Public key:  {out / (kid + '.pub')} (ship in appliance/trust/)")


def load_signing_key(path: str, passphrase: bytes) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(f"Cannot open signing key {path}: wrong passphrase or not a key file.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise click.ClickException(f"{path} is not an Ed25519 signing key.")
    return key


def payload_from_spec(spec: dict, now: datetime) -> dict:
    """Turn a YAML spec into a payload: dates to UTC text, a few defaults filled in."""
    if not isinstance(spec, dict):
        raise LicenceError("The spec must be a YAML mapping of licence fields.", "payload")
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        raise LicenceError(
            f"Unknown field(s) in the spec: {', '.join(map(str, unknown))} "
            f"(known: {', '.join(FIELDS)}).",
            "payload",
        )
    payload = dict(spec)
    payload.setdefault("licence_id", f"LIC-{now:%Y%m%d}-{secrets.token_hex(3).upper()}")
    payload.setdefault("issued_at", now)
    payload.setdefault("valid_from", payload["issued_at"])
    payload.setdefault("grace_days", DEFAULT_GRACE_DAYS)
    for name in ("issued_at", "valid_from", "expires_at"):
        if name in payload:
            payload[name] = coerce_timestamp(payload[name], name)
    for name in ("licence_id", "replaces", "installation_id"):
        if isinstance(payload.get(name), int):
            payload[name] = str(payload[name])
    return payload


@vendor.command("issue-licence")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Private signing key (KEYID.key).")
@click.option("--spec", "spec_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="YAML with the payload fields.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Where to write the licence.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False),
              help=f"Else env {PASSPHRASE_ENV}, else a prompt.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def issue_licence(key_file, spec_file, out_file, passphrase_file, force):
    """Sign a licence from a YAML spec.

    \b
    Spec fields: licence_id (default generated), customer, issued_at (default
    now), valid_from (default issued_at), expires_at, grace_days (default 30),
    max_tenants, max_seats, programs, profiles, installation_id (optional),
    installation_key (optional: the fingerprint 'appliance sync identity' prints;
    binds the licence to that key), replaces (optional). Dates may be 2027-01-31 or 2027-01-31T00:00:00Z.
    """
    try:
        spec = yaml.safe_load(Path(spec_file).read_text())
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{spec_file} is not valid YAML: {exc}") from exc
    key = load_signing_key(key_file, _passphrase(passphrase_file, confirm=False))
    try:
        payload = payload_from_spec(spec, clock.now().replace(microsecond=0))
        text = sign_payload(payload, key)
        # Read it back exactly as an appliance would before handing it out.
        kid = key_id_for(key.public_key())
        licence = verify_licence(text, TrustStore({kid: TrustedKey(kid, key.public_key(), True, key_file)}))
    except LicenceError as exc:
        raise click.ClickException(str(exc)) from exc
    _write_new(Path(out_file), text.encode("ascii"), 0o644, force=force)
    click.echo(f"Licence {licence.licence_id} for {licence.customer} written to {out_file}")
    click.echo(json.dumps(licence.summary(), indent=2))


@vendor.command("inspect-licence")
@click.argument("licence_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--pub", type=click.Path(exists=True), help="Extra public key file or directory to trust.")
def inspect_licence(licence_file, pub):
    """Verify a licence as an appliance would and print its fields as JSON."""
    try:
        trust = TrustStore.load(extra=pub)
        licence = verify_licence(Path(licence_file).read_bytes(), trust)
    except LicenceError as exc:
        raise click.ClickException(f"Licence refused: {exc}") from exc
    click.echo(json.dumps(licence.summary(), indent=2))


@vendor.command("sign-bundle")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Private signing key (KEYID.key).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False),
              help=f"Else env {PASSPHRASE_ENV}, else a prompt.")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def sign_bundle_command(key_file, passphrase_file, bundle_dir):
    """Sign an offline bundle (its SHA256SUMS) so installers accept it.

    Checks the bundle's checksums first: a damaged bundle is never signed.
    Writes BUNDLE_DIR/SHA256SUMS.sig.
    """
    problems = verify_bundle(bundle_dir)
    if problems:
        raise click.ClickException(f"{bundle_dir} is damaged, not signing it:\n  " + "\n  ".join(problems))
    key = load_signing_key(key_file, _passphrase(passphrase_file, confirm=False))
    try:
        out = sign_bundle(bundle_dir, key)
        kid = key_id_for(key.public_key())
        verify_bundle_signature(bundle_dir, TrustStore({kid: TrustedKey(kid, key.public_key(), True, key_file)}))
    except BundleSignatureError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out}: signed with {kid}")


for _command in RECEIVER_COMMANDS:
    vendor.add_command(_command)
