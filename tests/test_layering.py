"""The package layering (core <- web, vendor <- cli) is held by import-linter's contracts in
.importlinter; these tests run it, and prove it would notice a forbidden import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_contracts_are_kept():
    result = run_lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.fixture
def copy_of_tree(tmp_path) -> Path:
    """The package and its contracts, outside the installed checkout."""
    shutil.copytree(ROOT / "appliance", tmp_path / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    return tmp_path


@pytest.mark.parametrize(("module", "forbidden"), [
    ("appliance/core/config.py", "appliance.web.db"),
    ("appliance/core/licence/format.py", "appliance.cli.context"),
    ("appliance/web/db.py", "appliance.cli.context"),
    ("appliance/web/services/tenants.py", "appliance.vendor_tools.cli"),
    ("appliance/vendor_tools/receiver/service.py", "appliance.web.db"),
])
def test_a_forbidden_import_breaks_a_contract(copy_of_tree, module, forbidden):
    path = copy_of_tree / module
    path.write_text(path.read_text() + f"\nimport {forbidden}  # noqa\n")
    result = run_lint_imports(copy_of_tree)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and forbidden in result.stdout


def test_a_missing_layer_is_noticed(copy_of_tree):
    """Deleting the core's contract lines leaves its import of the web app to the layers contract."""
    path = copy_of_tree / "appliance/core/identity.py"
    path.write_text(path.read_text() + "\nimport appliance.web.db  # noqa\n")
    config = copy_of_tree / ".importlinter"
    text = config.read_text()
    start = text.index("[importlinter:contract:core-alone]")
    end = text.index("[importlinter:contract:web-no-cli]")
    config.write_text(text[:start] + text[end:])
    result = run_lint_imports(copy_of_tree)
    assert result.returncode != 0, result.stdout
    assert "Layers" in result.stdout and "BROKEN" in result.stdout
