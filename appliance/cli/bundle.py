"""The offline bundle: every wheel a host needs, so it never talks to a package index.

Enterprise sites are often air-gapped. The bundle is built on a machine that
can reach an index (the vendor's build host, or an engineer's laptop) and
carried over; hosts install it with

    pip install --no-index --find-links BUNDLE 'contact-appliance[production]==VERSION'

Layout of ``--out DIR``:

    DIR/*.whl          the project's wheel and every dependency's wheel
    DIR/SHA256SUMS     ``sha256sum -c`` format, checked by the appliance role
    DIR/manifest.json  name, version, the pip requirement to install, wheels
    DIR/SHA256SUMS.sig the vendor's signature over SHA256SUMS (``appliance vendor
                       sign-bundle``), checked by the installer's preflight

Wheels are built for the interpreter running this command; build on the same
Python minor version and architecture as the hosts (Debian 12: CPython 3.11,
x86_64), which ``manifest.json`` records so a mismatch is visible.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from appliance.core import clock
from appliance.core.bundle_signature import BundleSignatureError, sha256, verify_bundle, verify_bundle_signature
from appliance.core.licence.trust import TrustRootError, TrustStore

PROJECT = "contact-appliance"
DEFAULT_EXTRAS = ("production",)


class BundleError(RuntimeError):
    pass


def project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _pip(args: list[str], log) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    log("$ " + " ".join(cmd))
    result = subprocess.run(cmd, text=True, capture_output=True)
    if result.returncode != 0:
        raise BundleError(f"pip failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def build_bundle(out: Path, source: Path | None = None, extras=DEFAULT_EXTRAS, log=print) -> dict:
    """Build into a temporary sibling and rename, so DIR is complete or absent."""
    source = (source or project_root()).resolve()
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty; bundles are never mixed, pick a new directory")
    if not (source / "setup.py").exists() and not (source / "pyproject.toml").exists():
        raise BundleError(f"{source} is not a Python project (no setup.py or pyproject.toml)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as build_tmp:
            # Build from a copy: building in place leaves build/ and *.egg-info
            # behind in the source tree, and two builds must not share them.
            tree = Path(build_tmp) / "src"
            shutil.copytree(source, tree, ignore=shutil.ignore_patterns(
                ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".pytest_cache",
                ".ruff_cache", "instance", "*.db"))
            _pip(["wheel", "--no-deps", "--wheel-dir", str(staging), str(tree)], log)
        project_wheels = [p for p in staging.glob("*.whl") if _wheel_name_version(p.name)[0] == PROJECT]
        if len(project_wheels) != 1:
            raise BundleError(f"expected one {PROJECT} wheel, found {[p.name for p in project_wheels]}")
        version = _wheel_name_version(project_wheels[0].name)[1]
        requirement = f"{PROJECT}[{','.join(extras)}]=={version}" if extras else f"{PROJECT}=={version}"
        # Resolve and fetch every dependency as a wheel; sdist-only packages are
        # built here so the hosts need no compiler. --find-links makes pip take
        # the project's wheel just built rather than look it up in an index.
        _pip(["wheel", "--wheel-dir", str(staging), "--find-links", str(staging), requirement], log)
        # pip/setuptools/wheel are what a fresh virtualenv may need to upgrade
        # itself offline; ship them too so the hosts never reach for an index.
        _pip(["download", "--only-binary=:all:", "--dest", str(staging), "pip", "setuptools", "wheel"], log)
        wheels = sorted(staging.glob("*.whl"))
        entries = []
        for wheel in wheels:
            name, ver = _wheel_name_version(wheel.name)
            entries.append({"file": wheel.name, "name": name, "version": ver, "sha256": sha256(wheel)})
        manifest = {
            "name": PROJECT,
            "version": version,
            "requirement": requirement,
            "extras": list(extras),
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "platform": f"{platform.system().lower()}_{platform.machine()}",
            "built_at": f"{clock.now():%Y-%m-%dT%H:%M:%SZ}",
            "wheels": entries,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        sums = "".join(f"{e['sha256']}  {e['file']}\n" for e in entries)
        sums += f"{sha256(staging / 'manifest.json')}  manifest.json\n"
        (staging / "SHA256SUMS").write_text(sums)
        if out.exists():
            out.rmdir()
        staging.rename(out)
        log(f"bundle {requirement}: {len(entries)} wheels in {out} ({time.monotonic() - started:.0f}s)")
        return manifest
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@click.command("bundle")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New (or empty) directory to write the bundle into.")
@click.option("--source", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Project source tree to build (default: this installation's source).")
@click.option("--verify", "verify_only", is_flag=True,
              help="Only check an existing bundle in --out: its SHA256SUMS and its signature.")
@click.option("--trust", type=click.Path(exists=True, path_type=Path),
              help="With --verify: an extra signer's .pub (or a directory of them) besides the vendor's shipped keys.")
def bundle_command(out, source, verify_only, trust):
    """Build the offline install bundle (project + dependency wheels, checksums)."""
    if verify_only:
        problems = verify_bundle(out)
        if problems:
            raise click.ClickException("bundle damaged:\n  " + "\n  ".join(problems))
        try:
            signer = verify_bundle_signature(out, TrustStore.load(extra=str(trust) if trust else ""))
        except (BundleSignatureError, TrustRootError) as exc:
            raise click.ClickException(f"bundle refused: {exc}") from exc
        click.echo(f"{out}: intact, signed by {signer.key_id}")
        return
    try:
        manifest = build_bundle(out, source=source, log=lambda m: click.echo(m, err=True))
    except BundleError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out}: {manifest['requirement']} ({len(manifest['wheels'])} wheels)")
