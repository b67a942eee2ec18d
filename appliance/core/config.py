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
    "profile": EMBEDDED,  # or one of the sized profiles (appliance.core.sizing)
    # Session signing secret; generated into a 0600 file at init, never shipped.
    "secret_key_file": "keys/session.key",
    "master_key_file": "keys/master.key",
    # file | env (APPLIANCE_MASTER_KEY, base64) | passphrase (typed at boot; scrypt with the salt file)
    "master_key_source": "file",
    "master_key_salt_file": "keys/master.salt",
    "crypto_key_cache_seconds": 5,
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
    # The audit chain's head, kept outside the database (relative paths are under home).
    "audit_anchor_file": "audit.anchor",
    # Card numbers in messages, where a tenant masks them: this role and above may reveal them (audited).
    "pan_reveal_role": "supervisor",
    "login_throttle_attempts": 5,
    "login_throttle_window_seconds": 300,
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
