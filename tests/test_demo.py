"""README's quick-start command works from a fresh copy of the repository.

The test copies the tracked tree (as a clone would have it), then runs README's demo
command with two changes that keep it off the network: the virtualenv sees this test
environment's site-packages and pip does not reach an index. It then fetches the
login page over real HTTP on loopback and stops the server.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.pg import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


def readme_demo_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- demo-command -->\s*```(?:sh|bash)?\n(.+?)\n```", text, re.S)
    assert match, "README.md must hold the demo command after <!-- demo-command -->"
    return match.group(1).strip()


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _site_packages() -> list[str]:
    import site

    return [p for p in site.getsitepackages() if os.path.isdir(p)]


def test_readme_demo_command_serves_login(tmp_path):
    command = readme_demo_command()
    steps = [s.strip() for s in command.split("&&")]
    assert steps[0] == "python3 -m venv .venv", steps
    assert steps[1].startswith(".venv/bin/pip install -e .") and steps[2].startswith(".venv/bin/appliance demo")
    clone = tmp_path / "clone"
    copy_tree(clone)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("APPLIANCE_HOME", None)
    subprocess.run(["bash", "-c", steps[0]], cwd=clone, env=env, check=True, timeout=120)
    # Offline: the new venv borrows this environment's packages instead of the index.
    inner = next((clone / ".venv" / "lib").glob("python3*/site-packages"))
    (inner / "borrowed.pth").write_text("\n".join(_site_packages()) + "\n")
    subprocess.run(["bash", "-c", steps[1] + " --no-deps --no-build-isolation -q"], cwd=clone, env=env,
                   check=True, timeout=300)
    port = free_port()
    proc = subprocess.Popen(["bash", "-c", f"{steps[2]} --port {port} --conversations 50"], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_port(port, timeout=120), "demo did not start listening"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            page = resp.read().decode()
            assert resp.status == 200
        assert 'name="password"' in page and "csrf_token" in page
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert "provider.admin@demo.test" in out, out[-2000:]
    assert "Password for every demo login" in out
