"""Real mail servers on loopback for the e-mail channel tests.

``Dovecot``: Debian's dovecot-imapd started in the foreground with a throwaway
configuration, maildir and password file under a temporary directory, on a free port;
mail is put into the mailbox with IMAP APPEND, as a delivery agent would.
``SmtpSink``: aiosmtpd with a throwaway self-signed certificate, STARTTLS required before
AUTH, recording each session's TLS state and login with each mail it accepts.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_USER = "support@example.test"
MAIL_PASSWORD = "imap-secret-pw"
SMTP_USER = "relay-user"
SMTP_PASSWORD = "smtp-secret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc=None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class Dovecot:
    def __init__(self):
        # Its own directory directly under /tmp: pytest's tmp_path is 0700 to root, and
        # dovecot's unprivileged processes must reach the password file and the maildir.
        self.dir = Path(tempfile.mkdtemp(prefix="test-dovecot-"))
        self.port = free_port()
        self.proc = None

    def start(self) -> Dovecot:
        if not os.path.exists(DOVECOT):
            raise RuntimeError("dovecot is not installed: apt-get install dovecot-imapd (tests/setup.sh)")
        d = self.dir
        for sub in ("run", "state", "mail", "home"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Dovecot never accesses mail as root: the package's own users do.
            internal, login = "dovecot", "dovenull"
            owner = pwd.getpwnam("dovecot")
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            owner = pwd.getpwuid(os.getuid())
        for sub in ("mail", "home"):
            os.chown(d / sub, owner.pw_uid, owner.pw_gid)
        os.chmod(d, 0o755)
        (d / "users").write_text(f"{MAIL_USER}:{{PLAIN}}{MAIL_PASSWORD}::::::\n")
        os.chmod(d / "users", 0o600)
        os.chown(d / "users", owner.pw_uid, owner.pw_gid)
        (d / "dovecot.conf").write_text(f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {owner.pw_uid}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    user = {internal}
  }}
  unix_listener stats-writer {{
    user = {internal}
  }}
}}
""")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(d / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError as exc:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            log = (d / "dovecot.log").read_text() if (d / "dovecot.log").exists() else ""
            self.stop()
            raise RuntimeError(f"dovecot did not start: {exc}\n{err}\n{log[-2000:]}") from exc
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        conn.login(MAIL_USER, MAIL_PASSWORD)
        return conn

    def deliver(self, raw: bytes, mailbox: str = "INBOX") -> None:
        conn = self.client()
        try:
            typ, data = conn.append(mailbox, None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def recreate_mailbox(self, mailbox: str = "Other") -> None:
        conn = self.client()
        try:
            conn.create(mailbox)
        finally:
            conn.logout()

    def settings(self, **extra) -> dict:
        return {"imap_host": "127.0.0.1", "imap_port": self.port, "imap_security": "none",
                "imap_username": MAIL_USER, "imap_password": MAIL_PASSWORD, "imap_mailbox": "INBOX", **extra}


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    data: bytes
    tls: bool
    login: str | None
    message: object = field(default=None)


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data if session.authenticated else None
        self.sink.received.append(Received(
            mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos), data=envelope.original_content,
            tls=session.ssl is not None, login=login,
            message=message_from_bytes(envelope.original_content, policy=policy.default)))
        if self.sink.fail_next:
            code = self.sink.fail_next.pop(0)
            self.sink.received.pop()
            return f"{code} try again later" if code < 500 else f"{code} rejected"
        return "250 OK"


class SmtpSink:
    def __init__(self, directory: Path):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.received: list[Received] = []
        self.fail_next: list[int] = []
        self.auth_attempts: list[tuple[str, bool]] = []  # (user, over TLS)
        self.cert, key = self_signed(Path(directory))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.port = free_port()

        def authenticator(server, session, envelope, mechanism, auth_data):
            user = auth_data.login.decode()
            self.auth_attempts.append((user, session.ssl is not None))
            ok = user == SMTP_USER and auth_data.password.decode() == SMTP_PASSWORD
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

        self._make = lambda: Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                        tls_context=context, require_starttls=True, auth_required=True,
                                        auth_require_tls=True, authenticator=authenticator)
        self.controller = None

    def start(self) -> SmtpSink:
        """Start (again, after ``stop``: a stopped controller cannot be restarted) on the same port."""
        self.controller = self._make()
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def settings(self, **extra) -> dict:
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_security": "starttls",
                "smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD, "smtp_ca_file": str(self.cert),
                **extra}
