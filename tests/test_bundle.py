"""The offline bundle: complete, checksummed, installable with no index at all."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.cli.bundle import BundleError, build_bundle, verify_bundle

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bundle"
    manifest = build_bundle(out, log=lambda m: None)
    return out, manifest


def test_bundle_holds_every_wheel_with_checksums(bundle):
    out, manifest = bundle
    names = {w["name"] for w in manifest["wheels"]}
    assert {"contact-appliance", "flask", "peewee", "cryptography", "gunicorn", "psycopg2-binary", "pyyaml"} <= names
    assert manifest["requirement"] == f"contact-appliance[production]=={manifest['version']}"
    assert manifest["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    on_disk = {p.name for p in out.glob("*.whl")}
    assert on_disk == {w["file"] for w in manifest["wheels"]}
    assert not list(out.glob("*.tar.gz")), "sdists would need a compiler on the host"
    # The file the hosts check with `sha256sum --check`.
    check = subprocess.run(["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = (out / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == len(manifest["wheels"]) + 1  # + manifest.json


def test_project_wheel_carries_the_sizing_files_unchanged(bundle):
    out, manifest = bundle
    wheel = next(out / w["file"] for w in manifest["wheels"] if w["name"] == "contact-appliance")
    root = Path(__file__).resolve().parents[1]
    with zipfile.ZipFile(wheel) as zf:
        for profile in ("minimal", "medium", "maximal"):
            suffix = f".data/data/share/contact-appliance/sizing/{profile}.yml"
            member = next(n for n in zf.namelist() if n.endswith(suffix))
            assert zf.read(member) == (root / "sizing" / f"{profile}.yml").read_bytes()


def test_tampering_is_detected(bundle, tmp_path, runner):
    out, manifest = bundle
    assert verify_bundle(out) == []
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    victim = copy / manifest["wheels"][0]["file"]
    victim.write_bytes(victim.read_bytes() + b"x")
    (copy / "stray-1.0-py3-none-any.whl").write_bytes(b"")
    problems = verify_bundle(copy)
    assert f"{victim.name}: checksum mismatch" in problems
    assert "stray-1.0-py3-none-any.whl: not listed in SHA256SUMS" in problems
    result = runner.invoke(main, ["bundle", "--out", str(copy), "--verify"])
    assert result.exit_code != 0 and "bundle damaged" in result.output


def test_refuses_to_mix_bundles(bundle):
    out, _ = bundle
    with pytest.raises(BundleError, match="not empty"):
        build_bundle(out, log=lambda m: None)


def test_installs_offline_into_a_fresh_virtualenv(bundle, tmp_path):
    out, manifest = bundle
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # No index, no find-links but the bundle, no user config: what an air-gapped host has.
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1")
    install = subprocess.run(
        [str(venv / "bin/pip"), "install", "--no-index", "--find-links", str(out), manifest["requirement"]],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    for module in ("gunicorn", "psycopg2", "appliance.web"):
        subprocess.run([str(venv / "bin/python"), "-c", f"import {module}"], check=True, timeout=60, cwd=tmp_path)
    # The installed copy finds the sizing files it was shipped with.
    rec = subprocess.run(
        [str(venv / "bin/appliance"), "sizing", "recommend", "--conversations-per-day", "100", "--operators", "3",
         "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "APPLIANCE_SIZING_DIR"},
    )
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["profile"] == "minimal"
    located = subprocess.run(
        [str(venv / "bin/python"), "-c", "from appliance.core.sizing import sizing_dir; print(sizing_dir())"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    ).stdout.strip()
    assert located.startswith(str(venv)), located
    assert hashlib.sha256(Path(located, "minimal.yml").read_bytes()).hexdigest() == hashlib.sha256(
        (Path(__file__).resolve().parents[1] / "sizing" / "minimal.yml").read_bytes()).hexdigest()


# -- the vendor's signature over SHA256SUMS ------------------------------------------------


def _small_bundle(directory: Path) -> Path:
    """The shape of a bundle (a wheel, manifest.json, SHA256SUMS) without building one."""
    directory.mkdir(parents=True)
    (directory / "demo-1.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    (directory / "manifest.json").write_text('{"version": "1.0"}\n')
    (directory / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("demo-1.0-py3-none-any.whl", "manifest.json")))
    return directory


@pytest.fixture
def vendor_key(tmp_path, runner):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long vendor passphrase")
    result = runner.invoke(main, ["vendor", "keygen", "--out", str(tmp_path / "keys"), "--passphrase-file",
                                  str(passphrase)])
    assert result.exit_code == 0, result.output
    key = next((tmp_path / "keys").glob("*.key"))
    return key, key.with_suffix(".pub"), passphrase


def _sign(runner, vendor_key, directory):
    key, _, passphrase = vendor_key
    return runner.invoke(main, ["vendor", "sign-bundle", "--key", str(key), "--passphrase-file", str(passphrase),
                                str(directory)])


def test_signed_bundle_verifies_with_the_vendor_key(tmp_path, runner, vendor_key):
    bundle_dir = _small_bundle(tmp_path / "b")
    signed = _sign(runner, vendor_key, bundle_dir)
    assert signed.exit_code == 0, signed.output
    assert (bundle_dir / "SHA256SUMS.sig").read_text().startswith("-----BEGIN APPLIANCE BUNDLE SIGNATURE-----")
    result = runner.invoke(main, ["bundle", "--out", str(bundle_dir), "--verify", "--trust", str(vendor_key[1])])
    assert result.exit_code == 0 and "intact, signed by ed25519-" in result.output, result.output
    # What the installer's preflight runs on the control machine.
    from appliance.core.bundle_signature import main as check

    assert check([str(bundle_dir), "--trust", str(vendor_key[1])]) == 0


def test_unsigned_tampered_or_foreign_bundles_are_refused(tmp_path, runner, vendor_key):
    from appliance.core.bundle_signature import BundleSignatureError, verify_bundle_signature
    from appliance.core.licence.testing import TestSigner
    from appliance.core.licence.trust import TrustStore

    trust = TrustStore.load(extra=str(vendor_key[1]))
    unsigned = _small_bundle(tmp_path / "unsigned")
    with pytest.raises(BundleSignatureError, match=r"SHA256SUMS.sig is missing: the bundle is not signed"):
        verify_bundle_signature(unsigned, trust)
    result = runner.invoke(main, ["bundle", "--out", str(unsigned), "--verify", "--trust", str(vendor_key[1])])
    assert result.exit_code != 0 and "not signed" in result.output

    # SHA256SUMS edited after signing to match a swapped wheel: checksums hold, the signature does not.
    tampered = _small_bundle(tmp_path / "tampered")
    assert _sign(runner, vendor_key, tampered).exit_code == 0
    wheel = tampered / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"evil wheel")
    (tampered / "SHA256SUMS").write_text(
        f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}\n"
        f"{hashlib.sha256((tampered / 'manifest.json').read_bytes()).hexdigest()}  manifest.json\n")
    assert verify_bundle(tampered) == []
    with pytest.raises(BundleSignatureError, match="changed after it was signed"):
        verify_bundle_signature(tampered, trust)

    # Signed, but by a key nobody trusts.
    foreign = _small_bundle(tmp_path / "foreign")
    from appliance.core.bundle_signature import sign_bundle

    stranger = TestSigner()
    sign_bundle(foreign, stranger.key)
    with pytest.raises(BundleSignatureError, match=f"signed by key {stranger.key_id}, which is not trusted"):
        verify_bundle_signature(foreign, trust)

    # A damaged bundle is never signed.
    (unsigned / "demo-1.0-py3-none-any.whl").write_bytes(b"changed")
    refused = _sign(runner, vendor_key, unsigned)
    assert refused.exit_code != 0 and "damaged, not signing it" in refused.output
    assert not (unsigned / "SHA256SUMS.sig").exists()
