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
