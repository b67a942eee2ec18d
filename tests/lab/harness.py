"""Fresh Debian 12 hosts on this machine, for proving the playbooks for real.

There is no VM or container engine here, so (see ../shared/LAB.md) a host is a
debootstrapped Debian 12 root filesystem booted with systemd-nspawn, systemd as
its PID 1, on a bridge this harness creates, reached by SSH like a customer's
server. The pristine image is cached outside the repository and rebuilt when
missing. Everything the harness makes (hosts, their disks, the bridge, the
nftables table, the ip_forward sysctl) is removed again by `Lab.close()`, which
the pytest fixtures call from finalizers so a failing test cleans up too.

Traffic stays on this machine's loopback and the bridge; the only way out is
the masquerade rule that lets `apt-get` inside a host reach Debian's mirror.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CACHE_DIR = Path(os.environ.get("APPLIANCE_LAB_CACHE", "/var/cache/appliance-lab"))
RUN_ROOT = Path(os.environ.get("APPLIANCE_LAB_RUN", "/var/lib/appliance-lab"))
IMAGE_NAME = "bookworm-minbase"
IMAGE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,sudo"
BRIDGE = "br-applab"
NET_PREFIX = "10.213.0"
BRIDGE_ADDR = f"{NET_PREFIX}.1"
SUBNET = f"{NET_PREFIX}.0/24"
NFT_TABLE = "appliance_lab"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class LabError(RuntimeError):
    pass


def run(cmd, check=True, timeout=120, **kw) -> subprocess.CompletedProcess:
    """Run a command with a bound on its time; the lab must never hang CI."""
    return subprocess.run(cmd, check=check, timeout=timeout, text=True, capture_output=True, **kw)


def debian_mirror() -> str:
    """The Debian mirror this machine itself uses (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        text = path.read_text()
        for block in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b(?!-)", block, re.M):
                m = re.search(r"^URIs:\s*(\S+)", block, re.M)
                if m:
                    return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        m = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s", legacy.read_text(), re.M)
        if m:
            return m.group(1)
    return DEFAULT_MIRROR


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_hierarchies() -> list[Path]:
    """The cgroup trees a container's systemd manages: the unified (v2) one and,
    on a hybrid layout like this machine's, the named v1 "systemd" one."""
    if (CGROUP_ROOT / "cgroup.procs").exists():
        return [CGROUP_ROOT]
    return [CGROUP_ROOT / name for name in ("unified", "systemd") if (CGROUP_ROOT / name / "cgroup.procs").exists()]


def remove_cgroup(path: Path):
    """Bottom-up: the container's systemd leaves its slices and scopes behind."""
    if not path.exists():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def ensure_image(log=print) -> Path:
    """The pristine host image; built once (about a minute) and cached."""
    image = CACHE_DIR / IMAGE_NAME
    done = image / ".lab-image-complete"
    if done.exists():
        return image
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        # Two sessions building at once would trample each other's tree.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return image
        tmp = CACHE_DIR / f"{IMAGE_NAME}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(image, ignore_errors=True)
        mirror = debian_mirror()
        log(f"lab: building host image with debootstrap from {mirror}")
        started = time.monotonic()
        run(
            ["debootstrap", "--variant=minbase", f"--include={IMAGE_PACKAGES}",
             "bookworm", str(tmp), mirror],
            timeout=900,
        )
        # The container's own getty on the console only gets in the way.
        (tmp / "etc/systemd/system/getty.target.wants").mkdir(parents=True, exist_ok=True)
        for unit in ("console-getty.service", "getty@tty1.service"):
            (tmp / "etc/systemd/system" / unit).unlink(missing_ok=True)
            os.symlink("/dev/null", tmp / "etc/systemd/system" / unit)
        (tmp / ".lab-image-complete").write_text(f"built in {time.monotonic() - started:.0f}s\n")
        tmp.rename(image)
        log(f"lab: host image ready in {time.monotonic() - started:.0f}s")
    return image


@dataclass
class Host:
    name: str
    address: str
    root: Path
    process: subprocess.Popen
    log_path: Path
    lab: Lab
    leader: int | None = None
    leader_start: str | None = None

    def ssh(self, command: str, check=True, timeout=120) -> subprocess.CompletedProcess:
        result = run([*self.lab.ssh_argv(self.address), command], check=False, timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(
                f"ssh {self.name}: {command!r} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def find_leader(self) -> int | None:
        """The host's PID 1 as seen from outside: nspawn's child that is PID 1 of its namespace.

        Found through nspawn's process, never by name, so a container of
        another run (or of anyone else) is never mistaken for this one.
        """
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if (re.search(rf"^PPid:\s+{self.process.pid}$", status, re.M)
                    and re.search(r"^NSpid:\s+\d+\s+1$", status, re.M)):
                return int(pid)
        return None

    def _start_time(self, pid: int) -> str | None:
        """Start time of a live process; None once it is gone or a zombie."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return None if fields[0] in ("Z", "X") else fields[19]

    def remember_leader(self, pid: int):
        self.leader, self.leader_start = pid, self._start_time(pid)

    def leader_alive(self) -> bool:
        """Still the same process (a PID can be reused once it is gone)."""
        return self.leader is not None and self._start_time(self.leader) == self.leader_start


@dataclass
class Lab:
    """One lab run: its own directory, SSH key, bridge, NAT and hosts."""

    log: callable = print
    run_dir: Path = field(default=None)
    hosts: list = field(default_factory=list)
    cgroups: list = field(default_factory=list)
    _ip_forward_before: str | None = None
    _made_bridge: bool = False
    _made_table: bool = False
    _machine_lock: object = None

    def __post_init__(self):
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        self.run_dir = RUN_ROOT / f"run-{os.getpid()}-{int(time.time())}"
        self.run_dir.mkdir()
        self.key = self.run_dir / "id_ed25519"

    # -- setup -------------------------------------------------------------
    def start(self):
        self._take_the_machine()
        self.image = ensure_image(self.log)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "appliance-lab",
             "-f", str(self.key)])
        self._clean_stale()
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self._made_bridge = True
        run(["ip", "addr", "add", f"{BRIDGE_ADDR}/24", "dev", BRIDGE])
        run(["ip", "link", "set", BRIDGE, "up"])
        forward = Path("/proc/sys/net/ipv4/ip_forward")
        self._ip_forward_before = forward.read_text().strip()
        forward.write_text("1\n")
        self.restore_nat()
        return self

    def restore_nat(self):
        """Masquerade only the lab subnet, only when it leaves by another link."""
        rules = f"""
table ip {NFT_TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {SUBNET} oifname != "{BRIDGE}" masquerade
  }}
}}
"""
        run(["nft", "-f", "-"], input=rules)
        self._made_table = True

    def cut_nat(self):
        """The hosts lose their way to Debian's mirror (an air-gapped site); the bridge stays."""
        run(["nft", "delete", "table", "ip", NFT_TABLE], check=False)

    def _take_the_machine(self):
        """One lab run per machine: they share the bridge, the NAT table, ip_forward and
        the hosts' veth names, so a second run (another checkout's suite) waits here."""
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        self._machine_lock = open(CACHE_DIR / "run.lock", "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._machine_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log("lab: another lab run holds this machine; waiting for it to finish")
            fcntl.flock(self._machine_lock, fcntl.LOCK_EX)

    def _clean_stale(self):
        """A run killed hard (SIGKILL, power loss) leaves these behind; remove them."""
        if run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
            self.log(f"lab: removing stale bridge {BRIDGE}")
            run(["ip", "link", "del", BRIDGE], check=False)
        if run(["nft", "list", "table", "ip", NFT_TABLE], check=False).returncode == 0:
            run(["nft", "delete", "table", "ip", NFT_TABLE], check=False)

    def ssh_argv(self, address: str) -> list[str]:
        return [
            "ssh", "-i", str(self.key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", f"root@{address}",
        ]

    def boot(self, name: str, octet: int, timeout=90) -> Host:
        """Copy the image, boot it with systemd, give it an address, wait for SSH."""
        root = self.run_dir / "hosts" / name
        root.parent.mkdir(exist_ok=True)
        self._drop_veth(name)  # left by a run that was killed hard
        run(["cp", "-a", str(self.image), str(root)], timeout=300)
        (root / ".lab-image-complete").unlink(missing_ok=True)
        (root / "etc/hostname").write_text(name + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        log_path = self.run_dir / f"{name}.console.log"
        # Each host gets its own cgroup. Without systemd on this machine, nspawn
        # would leave all containers in one cgroup, and their systemds would
        # trample each other's units of the same name (seen as "219/CGROUP"
        # when two hosts reloaded nftables at the same moment).
        cgroups = []
        for hierarchy in cgroup_hierarchies():
            path = hierarchy / "appliance-lab" / f"{self.run_dir.name}-{name}"
            try:
                path.mkdir(parents=True, exist_ok=True)
                cgroups.append(path)
            except OSError as exc:
                self.log(f"lab: no own cgroup in {hierarchy} ({exc}); hosts share one")
        self.cgroups.extend(cgroups)

        def join_cgroups():
            for path in cgroups:
                with contextlib.suppress(OSError):
                    (path / "cgroup.procs").write_text(f"{os.getpid()}\n")

        with open(log_path, "w") as console:
            # Its own session, so teardown can signal nspawn and all it started.
            proc = subprocess.Popen(
                ["systemd-nspawn", "-D", str(root), f"--machine={name}", "-b",
                 "--register=no", "--keep-unit", f"--network-bridge={BRIDGE}"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=join_cgroups,
            )
        address = f"{NET_PREFIX}.{octet}"
        host = Host(name, address, root, proc, log_path, self)
        self.hosts.append(host)
        deadline = time.monotonic() + timeout
        pid = None
        while pid is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"{name} did not boot; see {log_path}")
            time.sleep(0.5)
            pid = host.find_leader()
        host.remember_leader(pid)
        run(["nsenter", "-t", str(pid), "-n", "sh", "-c",
             f"ip link set lo up; ip addr add {address}/24 dev host0; "
             f"ip link set host0 up; ip route add default via {BRIDGE_ADDR}"])
        while True:
            if time.monotonic() > deadline:
                raise LabError(f"{name}: no SSH on {address}; see {log_path}")
            probe = run([*self.ssh_argv(address), "systemctl is-system-running --wait"],
                        check=False, timeout=60)
            state = probe.stdout.strip()
            if state in {"running", "degraded"}:
                break
            time.sleep(1)
        self.log(f"lab: {name} up at {address} ({state})")
        return host

    # -- teardown ----------------------------------------------------------
    def stop_host(self, host: Host, timeout=15):
        """Kill the host outright: it is thrown away, an orderly shutdown buys nothing.

        Killing the container's PID 1 ends every process in its PID namespace.
        Signalling only systemd-nspawn is not enough: with --register=no and no
        systemd on this machine, a killed nspawn leaves the container running.
        """
        if not host.leader_alive() and host.process.poll() is None:
            found = host.find_leader()  # boot failed before it was remembered
            if found is not None:
                host.remember_leader(found)
        if host.leader_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(host.leader, signal.SIGKILL)
        try:
            host.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(host.process.pid, signal.SIGKILL)
            host.process.wait(timeout=10)
        deadline = time.monotonic() + timeout
        while host.leader_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if host.leader_alive():
            raise LabError(f"{host.name}: its processes survived SIGKILL (PID {host.leader})")
        self._drop_veth(host.name)
        if host in self.hosts:
            self.hosts.remove(host)
        shutil.rmtree(host.root, ignore_errors=True)

    @staticmethod
    def _drop_veth(name: str):
        """nspawn's host-side veth ("vb-" + name) normally goes with the container."""
        link = f"vb-{name}"[:15]
        if run(["ip", "link", "show", link], check=False).returncode == 0:
            run(["ip", "link", "del", link], check=False)

    def _kill_leftovers(self):
        """Processes started for this run that outlived their parent.

        ansible-playbook's workers detach into their own sessions, so killing
        the playbook does not reach them; they are recognised by this run's
        unique directory on their command line.
        """
        marker = str(self.run_dir).encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue

    def close(self):
        errors = []
        self._kill_leftovers()
        for host in list(self.hosts):
            try:
                self.stop_host(host)
            except Exception as exc:  # keep tearing down the rest
                errors.append(f"{host.name}: {exc}")
        for path in self.cgroups:
            remove_cgroup(path)
        for hierarchy in cgroup_hierarchies():
            with contextlib.suppress(OSError):
                (hierarchy / "appliance-lab").rmdir()
        if self._made_table:
            run(["nft", "delete", "table", "ip", NFT_TABLE], check=False)
        if self._made_bridge:
            run(["ip", "link", "del", BRIDGE], check=False)
        if self._ip_forward_before is not None:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self._ip_forward_before + "\n")
        if os.environ.get("APPLIANCE_LAB_KEEP_RUN_DIR") != "1":
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self._machine_lock is not None:
            self._machine_lock.close()  # releases the flock for the next run
            self._machine_lock = None
        if errors:
            raise LabError("lab teardown: " + "; ".join(errors))
