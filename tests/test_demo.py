"""The demo as a newcomer meets it: README's quick-start command works from a fresh copy
of the repository, a busy port is one clear line, and the throwaway instance is gone
however the demo stops.

The README test copies the tracked tree (as a clone would have it), then runs README's
demo command with two changes that keep it off the network: the virtualenv sees this test
environment's site-packages and pip does not reach an index. It then fetches the login
page over real HTTP on loopback and stops the server.

Every demo here runs with TMPDIR pointed at a directory the test owns, so "nothing left
behind" is checked by that directory being empty, never by looking through /tmp.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from appliance.cli import instance as instance_commands
from appliance.cli import main
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
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(["bash", "-c", f"{steps[2]} --port {port} --conversations 50"], cwd=clone,
                            env=dict(env, TMPDIR=str(scratch)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    page = ""
    try:
        listening = wait_port(port, timeout=120)
        if listening:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
                page = resp.read().decode()
                assert resp.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert listening, f"demo did not start listening:\n{out[-2000:]}"
    assert 'name="password"' in page and "csrf_token" in page
    assert "provider.admin@demo.test" in out, out[-2000:]
    assert "Password for every demo login" in out
    assert f"Demo instance: {scratch}" in out, out[-2000:]
    assert list(scratch.iterdir()) == [], "the demo left its instance behind"


# -- the demo's own behaviour (run from this checkout, not a copy) ---------------------


def demo_env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(scratch))
    env.pop("APPLIANCE_HOME", None)
    return env


def appliance(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", *args]


def held_port() -> socket.socket:
    """A port something else is already listening on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def default_sigint():
    # A shell that starts a job in the background ignores SIGINT for it, and Python
    # keeps an inherited "ignore"; the demo must see Ctrl+C as a terminal sends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_busy_port_is_one_line_before_anything_is_built(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    with held_port() as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(appliance("demo", "--port", str(port)), env=demo_env(scratch),
                                capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"Port {port} on 127.0.0.1 is in use" in lines[0] and "--port" in lines[0], lines
    assert "http://" not in lines[0] and "Traceback" not in lines[0]
    assert list(scratch.iterdir()) == [], "nothing is created for a demo that cannot serve"


def test_port_taken_after_the_check_is_the_same_line_and_removes_the_instance(tmp_path, monkeypatch, runner):
    """The port can be taken while the demo seeds: waitress's bind failing says the same."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    monkeypatch.delenv("APPLIANCE_HOME", raising=False)
    monkeypatch.setattr(instance_commands, "_port_problem", lambda host, port: None)
    with held_port() as holder:
        port = holder.getsockname()[1]
        result = runner.invoke(main, ["demo", "--port", str(port), "--conversations", "5"])
    assert result.exit_code == 1, result.output
    assert f"Error: Port {port} on 127.0.0.1 is in use: pass --port N" in result.stderr
    assert "http://" not in result.output, result.output
    assert list(scratch.iterdir()) == [], "a demo that failed must remove its instance"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_a_serving_demo_removes_its_instance(tmp_path, stop):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    proc = subprocess.Popen(appliance("demo", "--port", str(port), "--conversations", "20"), env=demo_env(scratch),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=default_sigint)
    try:
        assert wait_port(port, timeout=120), "demo did not start listening"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as resp:
            assert resp.status == 200
        homes = list(scratch.iterdir())
        assert len(homes) == 1 and (homes[0] / "config.yml").exists(), homes
        proc.send_signal(stop)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-2000:]
    assert f"Removed the demo instance {homes[0]}" in out, out[-2000:]
    assert list(scratch.iterdir()) == []


def test_sigterm_while_the_demo_is_being_built_removes_it(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(appliance("demo", "--port", str(free_port())), env=demo_env(scratch),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # The directory appears as the demo starts building (config, keys, schema, seeding).
        deadline = time.monotonic() + 60
        while not list(scratch.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(scratch.iterdir()), "the demo never created its instance"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Removed the demo instance" in out, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    assert list(scratch.iterdir()) == []


def test_a_home_the_user_gave_is_kept_and_serve_says_the_same_about_a_busy_port(tmp_path):
    home = tmp_path / "mine"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    made = subprocess.run(appliance("--home", str(home), "demo", "--no-serve", "--conversations", "1"),
                          env=demo_env(scratch), capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    assert (home / "config.yml").exists() and "Removed" not in made.stdout + made.stderr
    assert list(scratch.iterdir()) == []
    with held_port() as holder:
        port = holder.getsockname()[1]
        result = subprocess.run(appliance("--home", str(home), "serve", "--port", str(port)),
                                env=demo_env(scratch), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [f"Error: Port {port} on 127.0.0.1 is in use: pass --port N (or stop what holds it)."], lines
    assert (home / "config.yml").exists(), "serve never removes an instance"
