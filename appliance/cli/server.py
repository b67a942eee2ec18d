"""The embedded server's limits (waitress), from the instance's configuration.

Each value is chosen in config.py's DEFAULTS and explained in docs/OPERATIONS.md
("Connection limits"); this module turns them into waitress options and makes the
process's open-files limit big enough for the connection limit.
"""

from __future__ import annotations

import resource

import click

# Sockets and files besides client connections: the listening socket, SQLite's three
# files per thread's connection, logs, the wakeup pipe.
FILE_HEADROOM = 64


def fit_open_files(limit: int, threads: int) -> int:
    """The connection limit the open-files limit allows, raising the soft limit first.

    waitress stops accepting at ``connection_limit``; past the open-files limit it
    would instead fail on accept() for everyone, so the connection limit must fit.
    """
    need = limit + 4 * threads + FILE_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, soft - 4 * threads - FILE_HEADROOM)
        click.echo(f"warning: server_connection_limit {limit} needs {need} open files but this process may "
                   f"open {soft} (ulimit -n; LimitNOFILE= under systemd): serving at most {fitted} connections",
                   err=True)
        return fitted
    return limit


def server_options(instance, threads: int | None = None) -> dict:
    """waitress's keyword arguments for ``instance`` (``threads`` from the command line wins)."""
    threads = int(threads or instance["server_threads"])
    timeout = int(instance["server_channel_timeout_seconds"])
    return {
        "threads": threads,
        "connection_limit": fit_open_files(int(instance["server_connection_limit"]), threads),
        "channel_timeout": timeout,
        # How often idle connections are looked for: often enough that the timeout means what it says.
        "cleanup_interval": max(1, min(30, timeout // 3)),
        "backlog": int(instance["server_backlog"]),
        # select() cannot watch descriptors above 1024; poll() has no such ceiling.
        "asyncore_use_poll": True,
    }
