"""Deployment profiles: their names, the sizing/*.yml files, and a recommendation for a site's load.

The YAML files in ``sizing/`` are the single source of truth; Ansible reads
the very same files (playbooks/tasks/load_profile.yml). Nothing here repeats a
figure: the recommendation is computed from what the files say.

Where the files are: in a source checkout (or an editable install) they are
the repository's ``sizing/`` directory next to this package; an installed
wheel carries them as data files under ``<prefix>/share/contact-appliance/
sizing`` (setup.py ``data_files``). ``APPLIANCE_SIZING_DIR`` overrides both.
"""

from __future__ import annotations

import math
import os
import sys
import sysconfig
from pathlib import Path

import yaml

# The profile names: what config.yml's ``profile`` and a usage report may say.
# The embedded default (SQLite and waitress on one host, what ``appliance init``
# sets up) is not installed by Ansible, so it has no sizing file; the sized
# profiles are ordered smallest first.
EMBEDDED = "embedded"
SIZED_PROFILES = ("minimal", "medium", "maximal")
PROFILES = (EMBEDDED, *SIZED_PROFILES)
REQUIRED_KEYS = ("profile", "capacity", "hosts", "web", "postgresql", "backup", "firewall", "security")


class SizingError(RuntimeError):
    """A sizing file is missing or malformed; the message names the file."""


def sizing_dir() -> Path:
    env = os.environ.get("APPLIANCE_SIZING_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "sizing")  # a source checkout
    for prefix in {sys.prefix, sysconfig.get_paths()["data"]}:
        candidates.append(Path(prefix) / "share" / "contact-appliance" / "sizing")
    for path in candidates:
        if (path / "minimal.yml").is_file():
            return path
    raise SizingError(
        "sizing files not found (looked in: " + ", ".join(str(c) for c in candidates) + "); "
        "set APPLIANCE_SIZING_DIR to the directory holding minimal.yml"
    )


def load_profile(name: str, directory: Path | None = None) -> dict:
    if name not in SIZED_PROFILES:
        raise SizingError(f"unknown profile {name!r}; choose one of {', '.join(SIZED_PROFILES)}")
    path = (directory or sizing_dir()) / f"{name}.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SizingError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SizingError(f"{path}: expected a mapping")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise SizingError(f"{path}: missing keys {', '.join(missing)}")
    if data["profile"] != name:
        raise SizingError(f"{path}: says profile {data['profile']!r}, expected {name!r}")
    for kind, spec in data["hosts"].items():
        for key in ("vcpus", "memory_gib", "disk_gib"):
            if not isinstance(spec.get("minimum", {}).get(key), int):
                raise SizingError(f"{path}: hosts.{kind}.minimum.{key} must be an integer")
    return data


def load_all(directory: Path | None = None) -> dict[str, dict]:
    return {name: load_profile(name, directory) for name in SIZED_PROFILES}


def recommend(conversations_per_day: int, operators: int, directory: Path | None = None) -> dict:
    """The smallest profile whose capacity covers the load, host counts and reasons.

    Beyond the largest profile's capacity, the stateless app tier scales out:
    more app hosts, each carrying the per-host figure the maximal file states.
    """
    if conversations_per_day < 0 or operators < 0:
        raise SizingError("load figures must not be negative")
    profiles = load_all(directory)
    reasons = []
    chosen = None
    for name in SIZED_PROFILES:
        cap = profiles[name]["capacity"]
        fits_conv = conversations_per_day <= cap["conversations_per_day"]
        fits_ops = operators <= cap["operators"]
        if fits_conv and fits_ops:
            chosen = name
            reasons.append(
                f"{name} is sized for up to {cap['conversations_per_day']:,} conversations a day "
                f"and {cap['operators']:,} operators; the site expects "
                f"{conversations_per_day:,} and {operators:,}."
            )
            break
        over = []
        if not fits_conv:
            over.append(f"{conversations_per_day:,} conversations a day exceeds its "
                        f"{cap['conversations_per_day']:,}")
        if not fits_ops:
            over.append(f"{operators:,} operators exceeds its {cap['operators']:,}")
        reasons.append(f"not {name}: " + " and ".join(over) + ".")
    beyond = chosen is None
    if beyond:
        chosen = SIZED_PROFILES[-1]
    profile = profiles[chosen]
    cap = profile["capacity"]
    hosts = []
    for kind, spec in profile["hosts"].items():
        count = spec["count"]["min"]
        per_host = cap.get("conversations_per_day_per_app_host")
        if "appliance_app" in spec["groups"] and per_host:
            needed = math.ceil(conversations_per_day / per_host)
            if needed > count:
                reasons.append(
                    f"{needed} app hosts: {conversations_per_day:,} conversations a day at "
                    f"{per_host:,} per app host."
                )
                count = needed
        hosts.append({"kind": kind, "groups": spec["groups"], "count": count, **spec["minimum"]})
    if beyond:
        reasons.append(
            f"the load is beyond what {chosen} is benchmarked for; the figures are an "
            "extrapolation, have the vendor review the sizing."
        )
    return {
        "profile": chosen,
        "input": {"conversations_per_day": conversations_per_day, "operators": operators},
        "hosts": hosts,
        "web": profile["web"],
        "security": profile["security"],
        "backup": profile["backup"],
        "reasons": reasons,
        "beyond_profiles": beyond,
    }


def format_recommendation(rec: dict) -> str:
    lines = [f"Recommended profile: {rec['profile']}", ""]
    header = f"{'host kind':<12} {'count':>5} {'vCPU':>5} {'RAM GiB':>8} {'disk GiB':>9}  groups"
    lines += [header, "-" * len(header)]
    for h in rec["hosts"]:
        lines.append(
            f"{h['kind']:<12} {h['count']:>5} {h['vcpus']:>5} {h['memory_gib']:>8} "
            f"{h['disk_gib']:>9}  {', '.join(h['groups'])}"
        )
    lines += ["", "Why:"] + [f"  - {r}" for r in rec["reasons"]]
    sec = rec["security"]
    lines += [
        "",
        f"Web: {rec['web']['workers']} gunicorn workers x {rec['web']['threads']} threads per app host.",
        f"Backups: {rec['backup']['target']}, encrypted={rec['backup']['encrypted']}, "
        f"kept {rec['backup']['retention_days']} days.",
        f"Admins must use TOTP: {'yes' if sec['admin_totp_required'] else 'no'}.",
        "",
        f"Install with: appliance_profile: {rec['profile']} (see playbooks/inventories/{rec['profile']}/).",
    ]
    return "\n".join(lines)
