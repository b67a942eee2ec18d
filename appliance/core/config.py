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

import yaml

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
    "crypto_key_cache_seconds": 5,
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
    # Attachments (both directions): the largest file, and the content types accepted
    # (exact types, or "type/*"). Anything else is refused with 413/415 naming the limit.
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
    "live_event_retention_seconds": 3600,
    # Each open stream holds a gunicorn thread: at most this many per worker process
    # (keep it below the profile's threads); pages beyond it poll every fallback_retry_ms.
    "live_streams_per_process": 2,
    "live_fallback_retry_ms": 5000,
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
    },
    # The e-mail channel (IMAP in; replies go out by SMTP through the channel outbox above).
    # Per-channel servers and passwords are the channel's own settings; these limits are shared.
    "email": {
        "poll_batch": 50,  # mails fetched per mailbox per worker round
        "network_timeout": 30.0,  # seconds, IMAP and SMTP
        "max_attachment_bytes": 10 * 1024 * 1024,  # larger MIME parts are left out, and said so
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
        path = resolve_home(home)
        cfg_path = path / CONFIG_FILE
        file_settings = {}
        if cfg_path.exists():
            try:
                file_settings = yaml.safe_load(cfg_path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{cfg_path} is not valid YAML: {exc}") from exc
            if not isinstance(file_settings, dict):
                raise ConfigError(f"{cfg_path} must hold a mapping of settings.")
        elif require_config:
            raise ConfigError(
                f"{cfg_path} does not exist: run 'appliance --home {path} init' first."
            )
        settings = _merge(DEFAULTS, file_settings)
        for key, value in DEFAULTS.items():
            env = os.environ.get(f"APPLIANCE_{key.upper()}")
            if env is not None and not isinstance(value, dict):
                settings[key] = _coerce(env, value)
        settings = _merge(settings, overrides or {})
        if settings["profile"] not in PROFILES:
            raise ConfigError(
                f"Unknown profile {settings['profile']!r} (set in {cfg_path} or APPLIANCE_PROFILE): "
                f"use one of {', '.join(PROFILES)}."
            )
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


def _coerce(text: str, like):
    if isinstance(like, bool):
        return text.strip().lower() in {"1", "true", "yes", "on"}
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
