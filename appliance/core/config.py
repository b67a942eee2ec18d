"""The instance configuration: one place for every setting.

An instance lives in a home directory (``--home`` or ``APPLIANCE_HOME``)
holding ``config.yml``, the key files and, on the embedded default, the
SQLite database. Settings resolve in this order, later wins:

1. the defaults below,
2. ``HOME/config.yml`` (written by ``appliance init`` or by Ansible),
3. ``APPLIANCE_<NAME>`` environment variables for top-level scalar keys.
"""

from __future__ import annotations

import copy
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from appliance.core.config_schema import Rule, between, one_of, problems
from appliance.core.sizing import EMBEDDED, PROFILES

CONFIG_FILE = "config.yml"

DEFAULTS: dict = {
    # sqlite:///<path> (relative paths are under home) or postgresql://user:pw@host:port/db
    "database_url": "sqlite:///appliance.db",
    # PostgreSQL connections each process keeps open (0: a new connection per request). One per
    # serving thread is enough (the role sets the profile's gunicorn threads); workers x size must
    # stay below the server's max_connections. Older connections are replaced after stale_seconds.
    "database_pool_size": 8,
    "database_pool_stale_seconds": 300,
    "database_pool_wait_seconds": 10,
    "profile": EMBEDDED,  # or one of the sized profiles (appliance.core.sizing)
    # Session signing secret; generated into a 0600 file at init, never shipped.
    "secret_key_file": "keys/session.key",
    "master_key_file": "keys/master.key",
    # file | env (APPLIANCE_MASTER_KEY, base64) | passphrase (typed at boot; scrypt with the salt file)
    "master_key_source": "file",
    "master_key_salt_file": "keys/master.salt",
    "crypto_key_cache_seconds": 5.0,
    # Each process keeps the evaluated licence state and checks every this many seconds whether
    # a licence was installed or the clock mark moved elsewhere (its own changes apply at once).
    "licence_state_recheck_seconds": 2,
    # Phone numbers without a country code get this one (e.g. "49"); empty: keep as typed.
    "phone_default_country_code": "",
    "phone_trunk_prefix": "0",
    "session_cookie_secure": False,
    "max_request_bytes": 1024 * 1024,
    # JSON bodies (API, widget, webhooks): checked on the raw bytes before parsing.
    "json_max_bytes": 256 * 1024,
    "json_max_depth": 32,
    # Bearer token for /metrics from other hosts; empty: loopback only.
    "metrics_token": "",
    # Failed logins per address and account within the window before that pair is locked;
    # each further failure doubles the lock, up to throttle.backoff_max_seconds. The lock is
    # per address+account, so an attacker elsewhere cannot lock the owner out.
    # The audit chain's head, kept outside the database (relative paths are under home).
    "audit_anchor_file": "audit.anchor",
    # Card numbers in messages, where a tenant masks them: this role and above may reveal them (audited).
    "pan_reveal_role": "supervisor",
    "login_throttle_attempts": 5,
    "login_throttle_window_seconds": 300,
    # Users with an admin role must enrol TOTP before they reach any page (the API too).
    "admin_totp_required": False,
    # Server-side sessions: ended after this long without a request, and after this long at all.
    "session_idle_timeout_seconds": 2 * 3600,
    "session_absolute_timeout_seconds": 12 * 3600,
    # Password-reset links an admin makes for a user: hours until an unused link stops working.
    "password_reset_link_hours": 24,
    # The address users reach the web UI at (https://cc.bank.example), for links in e-mails;
    # empty: the address the admin's own request came to.
    "public_url": "",
    # Reverse proxies in front of the app whose X-Forwarded-For is trusted for the client's
    # address (throttling): 0 when clients connect directly (the embedded default), 1 behind nginx.
    "trusted_proxy_hops": 0,
    # Per-address and per-account limits, counted in the database (so they hold across app hosts).
    "throttle": {
        "backoff_max_seconds": 3600,
        # Failed logins from one address (any accounts): high enough for an office behind one NAT.
        "login_per_address": 100,
        # Failed logins for one account from everywhere per login window; users with TOTP bypass
        # this one (their second factor still stands), so a distributed attack cannot lock them out.
        "login_per_account": 100,
        "totp_attempts": 5,  # wrong TOTP or recovery codes per account per login window
        "widget_window_seconds": 3600,
        "widget_conversations_per_address": 20,
        "widget_conversations_per_channel": 2000,
        "webhook_window_seconds": 60,
        "webhook_requests_per_address": 600,
    },
    # API tokens: the longest lifetime a token may be given, in days (0: tokens may not expire).
    "api_token_max_days": 0,
    # The installation's time zone (IANA name): metering days, billing periods and
    # future-dated changes follow its calendar, not UTC's.
    "timezone": "UTC",
    # The provider's sales and billing (appliance/web/business).
    "business": {
        "currency": "EUR",  # one currency per installation; amounts are integer minor units
        "currency_exponent": 2,
        "renewal_reminder_days": [90, 30, 7],
        # Reseller discount in whole percent by partner level.
        "partner_discounts": {"silver": 5, "gold": 10, "platinum": 15},
        # The public application form on the provider's portal (/apply), and its limit per sender address.
        "public_applications": True,
        "public_applications_per_hour": 5,
    },
    # The installation's own outgoing mail (renewal reminders to admins), through the site's
    # relay. Off while ``host`` is empty: notices then stay in the app. The password is read
    # from ``password_file`` (0600), never written into this file.
    "notify_mail": {
        "host": "",
        "port": 587,
        "security": "starttls",  # starttls | ssl | none (none: a relay on loopback, no login)
        "username": "",
        "password_file": "",
        "ca_file": "",  # the relay's CA when it is not in the system store
        "from": "",  # the sender address, e.g. contact-center@bank.example
        "timeout": 30.0,
        "max_attempts": 8,  # then the notice stays in the app only, with the reason
    },
    # Attachments (both directions, every channel: uploads, widget, webhook, messengers, e-mail
    # MIME parts): the largest file, and the content types accepted (exact types, or "type/*").
    # An upload beyond them is refused with 413/415 naming the limit; an inbound file beyond
    # them is left out and its message says so.
    "attachment_max_bytes": 5 * 1024 * 1024,
    "attachment_types": [
        "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
        "text/csv", "audio/ogg", "audio/mpeg", "video/mp4", "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/msword", "application/vnd.ms-excel", "application/octet-stream",
    ],
    # Live updates (Server-Sent Events): how long one stream lives before the browser
    # reconnects with Last-Event-ID, and how often it looks for new events.
    "live_stream_seconds": 25,
    "live_poll_seconds": 0.25,
    "live_event_retention_seconds": 3600.0,
    # Each open stream holds a gunicorn thread: at most this many per worker process
    # (keep it below the profile's threads); pages beyond it poll every fallback_retry_ms.
    "live_streams_per_process": 2,
    "live_fallback_retry_ms": 5000,
    # The embedded server (appliance serve, waitress); gunicorn behind nginx has its own (roles/).
    # Requests handled at once; each open live stream holds one.
    "server_threads": 8,
    # Open connections before it stops accepting (waitress's default, 100, let 101 idle or slow
    # clients lock everyone out). Idle and half-sent requests cost a socket each, not a thread;
    # serve raises the open-files limit to fit, or lowers this to what the limit allows.
    "server_connection_limit": 1000,
    # Seconds a connection may send nothing before it is closed: frees sockets that
    # keep-alive clients and stalled senders hold. Longer than nginx's upstream
    # keepalive_timeout (50 s), so a proxy in front never reuses a closed connection.
    "server_channel_timeout_seconds": 75,
    # Connections the kernel queues while the server is busy accepting (capped by net.core.somaxconn).
    "server_backlog": 1024,
    # /health and status fail when a disk the instance writes to (home, SQLite's directory) has less
    # free space: at that point SQLite is about to answer "database or disk is full".
    "disk_min_free_bytes": 16 * 1024 * 1024,
    # Presence: online while a page holds a stream and had input within away_after;
    # away after that idle time; offline once no stream was seen for offline_after.
    "presence_away_seconds": 300,
    "presence_offline_seconds": 60,
    # Usage reports to the vendor (docs/SYNC.md). An admin's on/off switch, kept in the
    # database, overrides "enabled"; "locked_off" is the installer's and wins over both.
    "sync": {
        "enabled": False,
        "locked_off": False,
        "vendor_url": "",
        "share_tenant_names": False,
        # Plain HTTP only to loopback, unless this is set (a lab).
        "allow_http": False,
        # A CA bundle file for a private CA in front of the vendor; empty: the system's CAs.
        "ca_bundle": "",
        "max_requests_per_day": 24,  # shared by every app host of the installation
        "max_reports_per_batch": 31,
        "max_batches_per_run": 4,
        "connect_timeout": 5.0,
        "read_timeout": 30.0,
        # Retry delay: uniform(d/2, d) with d = min(backoff_max, backoff_base * 2^(attempts-1)).
        "backoff_base": 60.0,
        "backoff_max": 6 * 3600.0,
    },
    # Encrypted backups (docs/BACKUP.md). The profiles' retention_days and archive
    # settings land here through config.yml.
    "backup": {
        "directory": "backups",  # relative to home; a separate disk or a mount of the backup target
        "retention_days": 7,
        # Keep the first archive of each month for archive_retention_months (maximal profile).
        "archive": False,
        "archive_retention_months": 0,
        "chunk_bytes": 1024 * 1024,  # plaintext per AEAD chunk
        "pg_bindir": "",  # where pg_dump/pg_restore/psql live; empty: the newest installed
    },
    # appliance support-bundle: log files to include (globs, relative to home) and how much.
    "support": {
        "log_globs": ["logs/*.log"],
        "log_lines": 2000,
        "journal_units": ["appliance-web", "appliance-worker"],
    },
    # Messenger and webhook channels (per-channel settings such as tokens live in the database).
    "channels": {
        # A signed webhook delivery whose timestamp is further than this from the server's clock is refused.
        "webhook_tolerance_seconds": 300,
        "http_timeout_seconds": 10.0,
        # getUpdates / VK long poll: how long one poll waits for news at the service.
        "poll_wait_seconds": 20,
        # Outbox: tries before a reply is marked failed; delay d = min(backoff_max, backoff_base * 2^(tries-1)).
        "outbox_max_attempts": 8,
        "outbox_backoff_base": 5.0,
        "outbox_backoff_max": 3600.0,
        "outbox_batch": 50,  # replies one worker round sends at most
        "rate_per_minute": 60,  # replies per channel per minute (overridable per channel)
        # After a signing secret is rotated, the old one still verifies for this long (0: it
        # stops at once), so senders can switch without losing deliveries. Bounded: a week.
        "secret_grace_hours": 24.0,
    },
    # The e-mail channel (IMAP in; replies go out by SMTP through the channel outbox above).
    # Per-channel servers and passwords are the channel's own settings; these limits are shared.
    "email": {
        "poll_batch": 50,  # mails fetched per mailbox per worker round
        "network_timeout": 30.0,  # seconds, IMAP and SMTP
    },
}

# Keys that were replaced, as (old path, new path): one still in config.yml is refused like
# an unknown key, but with the fix (where the value goes now), rather than taken silently
# with a changed meaning.
RENAMED_KEYS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # Was e-mail's own limit; one limit now covers every channel's files (it used to be 10 MiB).
    (("email", "max_attachment_bytes"), ("attachment_max_bytes",)),
)



# -- the schema -----------------------------------------------------------------------------
# Every key of config.yml is a key of DEFAULTS and takes its default's type (true/false, a
# whole number, a number, text, a list of the first item's type, a section of the same
# shape); an unknown key is refused. RULES adds what a type cannot say: ranges, choices
# and checks; numbers without a rule must not be negative.

def _database_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme == "sqlite" and value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
        return None
    if parsed.scheme in ("postgresql", "postgres") and parsed.path.strip("/"):
        return None
    return "use sqlite:///PATH (relative to the home directory) or postgresql://USER:PASSWORD@HOST:PORT/DB"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not an IANA time zone name: use one such as UTC or Europe/Berlin"
    return None


def _currency(value: str) -> str | None:
    ok = len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()
    return None if ok else f"{value!r} is not an ISO 4217 code: use three capital letters such as EUR"


def _content_type(value: str) -> str | None:
    return None if value.count("/") == 1 and " " not in value else f"{value!r} is not a content type such as image/png"


def _digits(value) -> str | None:
    return None if str(value).isdigit() or value == "" else f"{value!r} must be digits only (or \"\")"


def _public_url(value: str) -> str | None:
    parsed = urlparse(value)
    if value == "" or (parsed.scheme in ("http", "https") and parsed.netloc and not parsed.query):
        return None
    return f"{value!r} is not the web UI's address: use one such as https://cc.bank.example (or \"\")"


ROLES = ("agent", "supervisor", "admin")  # the membership roles, lowest first (web/models/tenancy.py)
POSITIVE = between(0.001)
AT_LEAST_ONE = between(1)

RULES: dict = {
    "database_url": Rule(check=_database_url, secret=True),
    "profile": one_of(*PROFILES),
    "master_key_source": one_of("file", "env", "passphrase"),
    "crypto_key_cache_seconds": between(0, 3600),
    "phone_default_country_code": Rule(types=(str, int), check=_digits),
    "phone_trunk_prefix": Rule(types=(str, int), check=_digits),
    "max_request_bytes": between(1024),
    "json_max_bytes": between(1024),
    "json_max_depth": between(1, 1000),
    "metrics_token": Rule(secret=True),
    "pan_reveal_role": one_of(*ROLES),
    "login_throttle_attempts": AT_LEAST_ONE,
    "login_throttle_window_seconds": AT_LEAST_ONE,
    "session_idle_timeout_seconds": between(60),
    "session_absolute_timeout_seconds": between(60),
    "password_reset_link_hours": between(1, 720),
    "public_url": Rule(check=_public_url),
    "trusted_proxy_hops": between(0, 10),
    "throttle": {key: AT_LEAST_ONE for key in DEFAULTS["throttle"]},
    "api_token_max_days": between(0, 36500),
    "timezone": Rule(check=_timezone),
    "business": {
        "currency": Rule(check=_currency),
        "currency_exponent": between(0, 4),
        "renewal_reminder_days": Rule(items=between(1, 3650)),
        "partner_discounts": Rule(values=between(0, 100), like=0),
    },
    "attachment_max_bytes": AT_LEAST_ONE,
    "attachment_types": Rule(items=Rule(check=_content_type)),
    "live_stream_seconds": AT_LEAST_ONE,
    "live_poll_seconds": between(0.01, 60),
    "live_event_retention_seconds": AT_LEAST_ONE,
    "live_fallback_retry_ms": between(100),
    "presence_away_seconds": AT_LEAST_ONE,
    "presence_offline_seconds": AT_LEAST_ONE,
    "sync": {
        "max_requests_per_day": between(1, 1440),
        "max_reports_per_batch": AT_LEAST_ONE,
        "max_batches_per_run": AT_LEAST_ONE,
        "connect_timeout": POSITIVE,
        "read_timeout": POSITIVE,
        "backoff_base": POSITIVE,
        "backoff_max": POSITIVE,
    },
    "backup": {
        "retention_days": AT_LEAST_ONE,
        "chunk_bytes": between(4096, 64 * 1024 * 1024),
    },
    "channels": {
        "webhook_tolerance_seconds": AT_LEAST_ONE,
        "http_timeout_seconds": POSITIVE,
        "outbox_max_attempts": AT_LEAST_ONE,
        "outbox_backoff_base": POSITIVE,
        "outbox_backoff_max": POSITIVE,
        "outbox_batch": AT_LEAST_ONE,
        "rate_per_minute": AT_LEAST_ONE,
        "secret_grace_hours": between(0, 168),
    },
    "email": {
        "poll_batch": AT_LEAST_ONE,
        "network_timeout": POSITIVE,
    },
}


class ConfigError(RuntimeError):
    """The instance configuration is missing or unusable; the message says what to do."""


def resolve_home(home: str | os.PathLike | None) -> Path:
    if home is None:
        home = os.environ.get("APPLIANCE_HOME")
    if not home:
        raise ConfigError(
            "No instance directory: pass --home DIR or set APPLIANCE_HOME "
            "(create one with 'appliance --home DIR init')."
        )
    return Path(home).expanduser().resolve()


def renamed_key_problems(settings: dict) -> list[str]:
    """A line per replaced key that ``settings`` (as written in config.yml) still uses, with the fix."""
    found = []
    for old, new in RENAMED_KEYS:
        node = settings
        for part in old:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            found.append(f"{'.'.join(old)}: replaced by {'.'.join(new)}; move the value ({node!r}) there "
                         "and remove this line")
    return found


_MISSING = object()


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Instance:
    """An appliance instance directory and its resolved settings."""

    home: Path
    settings: dict

    @classmethod
    def load(cls, home=None, overrides: dict | None = None, require_config=True) -> Instance:
        """Resolve the settings; raises ConfigError naming the file (or variable), each wrong key and the fix."""
        path = resolve_home(home)
        cfg_path = path / CONFIG_FILE
        file_settings = read_config_file(cfg_path, require=require_config, home=path)
        settings = _merge(DEFAULTS, file_settings)
        for key, value in DEFAULTS.items():
            env = os.environ.get(f"APPLIANCE_{key.upper()}")
            if env is not None and not isinstance(value, dict):
                settings[key] = _from_environment(key, env, value)
        settings = _merge(settings, overrides or {})
        return cls(home=path, settings=settings)

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.home / p

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def database_url(self) -> str:
        url = self.settings["database_url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str(self.path(url[len("sqlite:///"):]))
        return url

    def __getitem__(self, key):
        return self.settings[key]


def read_config_file(cfg_path: Path, require: bool = True, home: Path | None = None) -> dict:
    """The settings written in ``cfg_path``, checked against the schema (``{}`` if absent and not required)."""
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if require:
            raise ConfigError(
                f"{cfg_path} does not exist: run 'appliance --home {home or cfg_path.parent} init' first."
            ) from None
        return {}
    except PermissionError:
        raise ConfigError(
            f"Cannot read {cfg_path}: permission denied. Run as the service user, or give that user "
            f"the file ('chown SERVICE_USER {cfg_path}; chmod 600 {cfg_path}')."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{cfg_path} is not UTF-8 text (byte {exc.start}): save it as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {cfg_path}: {exc.strerror or exc}.") from None
    try:
        settings = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(cfg_path, exc)) from None
    if settings is None:
        return {}
    wrong = problems(settings, DEFAULTS, RULES)
    renamed = renamed_key_problems(settings) if isinstance(settings, dict) else []
    if renamed:  # said with the fix, in place of "unknown setting"
        names = {line.split(": ", 1)[0] for line in renamed}
        wrong = renamed + [line for line in wrong if line.split(": ", 1)[0] not in names]
    if wrong:
        where = _key_lines(text)
        lines = "\n".join(f"  {_located(problem, where)}" for problem in wrong)
        raise ConfigError(
            f"{cfg_path} has {len(wrong)} setting(s) the appliance cannot use; fix or remove them "
            f"(every setting and its default: appliance/core/config.py):\n{lines}"
        )
    return settings


def _located(problem: str, where: dict[str, int]) -> str:
    name = problem.split(": ", 1)[0]
    return f"line {where[name]}: {problem}" if name in where else problem


def _key_lines(text: str) -> dict[str, int]:
    """The line each setting is written on, by its dotted name (``sync.enabled``, ``days[1]``)."""
    lines: dict[str, int] = {}

    def walk(node, name):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = f"{name}.{key.value}" if name else str(key.value)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[f"{name}[{index}]"] = item.start_mark.line + 1
                walk(item, f"{name}[{index}]")

    walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    return lines


def _yaml_message(cfg_path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return (
        f"{cfg_path} is not valid YAML{where}: {what}. Fix that line: indent with spaces only, "
        "write 'key: value' with a space after the colon, and quote values holding ': ' or ' #'."
    )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _from_environment(key: str, text: str, default):
    """An APPLIANCE_<KEY> value as its default's type, checked like the file's value."""
    variable = f"APPLIANCE_{key.upper()}"
    try:
        value = _coerce(text, default)
    except ValueError:
        value = text  # reported below as the wrong type
    wrong = problems({key: value}, DEFAULTS, RULES)
    if wrong:
        problem = wrong[0].split(": ", 1)[1]
        raise ConfigError(f"The environment variable {variable} is wrong: {problem}. Correct or unset it.")
    return value


def _coerce(text: str, like):
    if isinstance(like, bool):
        word = text.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(text)
        return word in _TRUE
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, list):  # a comma-separated list in an environment variable
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def write_secret_file(path: Path, data: bytes, overwrite: bool = False) -> bool:
    """Create a 0600 file atomically; never replace an existing one unless told to.

    Returns True when the file was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() and not overwrite:
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def write_config(home: Path, settings: dict) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o750)
    text = "# Appliance settings; see appliance/core/config.py for every key.\n"
    text += yaml.safe_dump(settings, sort_keys=True)
    write_secret_file(home / CONFIG_FILE, text.encode(), overwrite=True)
