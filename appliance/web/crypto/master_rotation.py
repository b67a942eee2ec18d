"""Master key rotation, its crash recovery, and how a running process follows it.

``rotate_master`` goes through these steps, each safe to be killed after:

1. ``new-key-written``: the new key is on disk as ``master.key.new`` (0600, fsynced);
   the database still names the old key, so the old file stays the key file;
2. ``rewrapped``: every data key is re-wrapped, not yet committed (a kill rolls it back);
3. ``committed``: the database names the new key; ``master.key.new`` holds it;
4. ``old-key-retired``: the old file is in ``keys/retired/``; only ``master.key.new`` remains;
5. ``new-key-promoted``: ``master.key.new`` is ``master.key``; done.

After 3, 4 or 5 every process can find the key the database names (``candidate_keys``
reads ``master.key`` and then ``master.key.new``), and the next command or start that
opens the key ring finishes the file swap (``recover``). A rotation holds an exclusive
lock on ``keys/.master-rotation.lock`` throughout, so recovery never races a rotation
that is still running: while the lock is held, others use the new file in memory only.

Running processes pick the new key up by themselves: data keys they already unwrapped
keep working (a master rotation does not change them), and a data key that no longer
unwraps makes the key ring compare its key id with ``crypto_master`` and re-read the
key files (``KeyRing.refresh_master``). No restart is needed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import time
from pathlib import Path

from appliance.core.config import write_secret_file
from appliance.web.crypto.keyring import KeyRing, get_keyring, unwrap_key, wrap_key
from appliance.web.crypto.master import (
    ENV_PASSPHRASE,
    MasterKey,
    MasterKeyError,
    derive_from_passphrase,
    encode_key_file,
    generate_key,
    key_file_path,
    key_source,
    new_salt_document,
    parse_key_text,
    pending_path,
    salt_file_path,
)
from appliance.web.crypto.tables import CryptoMaster, TenantKey
from appliance.web.db import is_postgres, write_transaction

log = logging.getLogger("appliance.web.crypto")

# A test hook, read only here: the name of a step after which the rotating process
# kills itself with SIGKILL (tests/test_key_rotation_faults.py proves every step heals).
CRASH_ENV = "APPLIANCE_TEST_CRASH_AT"
STEPS = ("new-key-written", "rewrapped", "committed", "old-key-retired", "new-key-promoted")
LOCK_NAME = ".master-rotation.lock"


def _step(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _now():
    from appliance.core import clock

    return clock.naive_now()


# -- the lock -----------------------------------------------------------------------------

@contextlib.contextmanager
def rotation_lock(keys_dir: Path):
    """Yield True while holding this host's rotation lock, False if another process has it.

    An flock: the kernel drops it when its holder dies, so a killed rotation never
    leaves a stale lock behind.
    """
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(keys_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- files ----------------------------------------------------------------------------------

def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retire_file(path: Path, old_id: str) -> Path | None:
    """Move a key (or salt) file to keys/retired/, named by the key id it held."""
    if not path.exists():
        return None
    retired = path.parent / "retired"
    retired.mkdir(mode=0o700, exist_ok=True)
    target = retired / f"{path.stem}-{old_id}{path.suffix}"
    os.replace(path, target)
    return target


def promote(path: Path, old_id: str) -> None:
    """Retire ``path`` and rename ``path.new`` into its place (steps 4 and 5)."""
    retire_file(path, old_id)
    _fsync_dir(path.parent)
    _step("old-key-retired")
    os.replace(pending_path(path), path)
    _fsync_dir(path.parent)
    _step("new-key-promoted")


def _read_file_key(path: Path) -> MasterKey | None:
    """The key in a key file, or None if it is missing or does not hold one."""
    try:
        return MasterKey(parse_key_text(path.read_text(), str(path)), "file", key_file_path_of(path))
    except (OSError, UnicodeDecodeError, MasterKeyError):
        return None


def key_file_path_of(path: Path) -> Path:
    """``master.key`` for ``master.key`` and for ``master.key.new``."""
    return path.with_name(path.name.removesuffix(".new"))


def _derive(passphrase: str | None, salt: Path) -> MasterKey | None:
    if not passphrase or not salt.exists():
        return None
    try:
        return MasterKey(derive_from_passphrase(passphrase, salt), "passphrase", key_file_path_of(salt))
    except (OSError, ValueError, KeyError):
        return None


def candidate_keys(instance, passphrase: str | None = None):
    """The keys this host can offer, in order: the configured file, then its ``.new``.

    Yields (file, MasterKey or None). The environment source has no files to offer.
    """
    source = key_source(instance)
    if source == "env":
        return
    if source == "passphrase":
        passphrase = passphrase or os.environ.get(ENV_PASSPHRASE)
        salt = salt_file_path(instance)
        for path in (salt, pending_path(salt)):
            yield path, _derive(passphrase, path)
        return
    path = key_file_path(instance)
    for candidate in (path, pending_path(path)):
        yield candidate, _read_file_key(candidate)


def reload_master(instance, recorded: str, passphrase: str | None = None) -> MasterKey:
    """The key the database names (``recorded``) from this host's files, or a MasterKeyError.

    Called by a running key ring that finds its key outdated.
    """
    source = key_source(instance)
    for _path, key in candidate_keys(instance, passphrase):
        if key is not None and key.key_id == recorded:
            return key
    if source == "env":
        raise MasterKeyError(
            f"The master key was rotated (the database now needs key {recorded}), but this process "
            f"takes its key from $APPLIANCE_MASTER_KEY: set the new key there and restart the "
            f"web and worker services.")
    if source == "passphrase":
        raise MasterKeyError(
            f"The master key was rotated to a new passphrase (the database now needs key {recorded}): "
            f"restart the web and worker services with the new {ENV_PASSPHRASE}.")
    path = key_file_path(instance)
    raise MasterKeyError(
        f"The master key was rotated (the database now needs key {recorded}), but neither {path} "
        f"nor {pending_path(path)} on this host holds it: copy the new key file from the host "
        f"where 'appliance keys rotate-master' ran to {path} (mode 0600, the service user's). "
        f"Running processes pick it up on their next request; no restart is needed.")


# -- recovery at start ------------------------------------------------------------------------

def recorded_master_id() -> str | None:
    """The master key id the database names (None before the first start)."""
    return CryptoMaster.select(CryptoMaster.master_key_id).order_by(CryptoMaster.id).scalar()


def recover(instance, recorded: str | None,
            passphrase: str | None = None) -> tuple[MasterKey | None, str | None]:
    """Finish a master key rotation that stopped half-way: (key to use or None, what was done).

    No key means: load it from its source as usual (this includes a rotation that
    stopped before its commit, whose stale ``.new`` file the next rotation replaces).
    Otherwise the key is the one the database names; if no rotation is running on this
    host, the file swap was finished on disk as well. Raises MasterKeyError naming the
    files and the fix when no file on this host holds the key the database needs.
    """
    if recorded is None or key_source(instance) == "env":
        return None, None
    found = candidate_keys(instance, passphrase)  # lazy: a passphrase costs a scrypt per file
    path, current = next(found)
    if current is not None and current.key_id == recorded:
        # A derived key is returned so that it is not derived twice; a key file is read
        # again by load_master_key, which also checks its mode.
        return (current if current.source == "passphrase" else None), None
    pending, new = next(found)
    if new is None or new.key_id != recorded:
        retired = path.parent / "retired" / f"{path.stem}-{recorded}{path.suffix}"
        if not path.exists() and (pending.exists() or retired.exists()):
            raise MasterKeyError(_nothing_matches(instance, recorded, path, pending, new))
        if key_source(instance) == "passphrase" and pending.exists():
            raise MasterKeyError(
                f"The passphrase does not open this database (it needs master key {recorded}) "
                f"with {path}, nor with {pending}, which is left from a passphrase rotation. Set "
                f"{ENV_PASSPHRASE} to (or type) that rotation's new passphrase: if the database "
                f"had switched to it, this start finishes the rotation. Otherwise give the old one.")
        return None, None  # a wrong key: verify_master says so with its own message
    try:
        with rotation_lock(path.parent) as free:
            if not free:
                # The rotation is still running here and will finish the swap itself.
                return new, None
            promote(path, current.key_id if current else time.strftime("unknown-%Y%m%d%H%M%S"))
    except OSError as exc:
        note = (f"a master key rotation stopped after the database switched to key {recorded}; "
                f"{pending} holds it but could not be renamed ({exc.strerror}): using it from "
                f"there. Run 'mv {pending} {path}' as the service user.")
        log.error("%s", note)
        return new, note
    note = (f"finished a master key rotation that had stopped after the database switched to key "
            f"{recorded}: {pending} is now {path}"
            + ("" if current is None else f"; the old key file is in {path.parent / 'retired'}"))
    log.warning("%s", note)
    return new, note


def _nothing_matches(instance, recorded: str, path: Path, pending: Path, new: MasterKey | None) -> str:
    home = instance.home
    parts = [f"{path} is missing and the database needs master key {recorded}."]
    retired = path.parent / "retired" / f"{path.stem}-{recorded}{path.suffix}"
    if retired.exists():
        parts.append(f"{retired} holds that key: run 'mv {retired} {path}' and start again.")
    elif pending.exists():
        held = f"key {new.key_id}" if new is not None else "no readable key"
        parts.append(f"{pending} is left from a master key rotation but holds {held}, not the one "
                     f"the database needs.")
    if not retired.exists():
        parts.append(f"Copy the key file from your key backup to {path} (mode 0600), or rebuild "
                     f"it with 'appliance --home {home} keys import-recovery KIT'.")
    return " ".join(parts)


def leftover_note(instance, recorded: str | None) -> str | None:
    """A sentence for ``keys status`` about a ``.new`` file the database does not use yet
    (prepared, or left by a rotation that stopped before its commit: harmless)."""
    if key_source(instance) == "env":
        return None
    base = salt_file_path(instance) if key_source(instance) == "passphrase" else key_file_path(instance)
    pending = pending_path(base)
    if not pending.exists():
        return None
    with rotation_lock(base.parent) as free:
        if not free:
            return f"a master key rotation is running on this host ({pending} exists)"
    return (f"{pending} holds a master key the database does not use yet (it still needs "
            f"{recorded}): written by 'keys rotate-master --prepare', or left by a rotation that "
            f"stopped before its commit. 'appliance keys rotate-master --prepared' rotates to it; "
            f"a plain 'rotate-master' replaces it")


# -- the rotation -----------------------------------------------------------------------------

def prepare_new_key(instance) -> MasterKey:
    """Write ``master.key.new`` for a rotation run later (so it can be copied to every app
    host first); an existing valid one is kept. Key file source only."""
    if key_source(instance) != "file":
        raise MasterKeyError("Only a master key kept in a key file can be prepared in advance.")
    path = key_file_path(instance)
    pending = pending_path(path)
    existing = _read_file_key(pending)
    current = _read_file_key(path)
    if existing is not None and (current is None or existing.key_id != current.key_id):
        return existing
    key = generate_key()
    write_secret_file(pending, encode_key_file(key), overwrite=True)
    _fsync_dir(pending.parent)
    return MasterKey(key, "file", path)


def rotate_master(instance, new_key: bytes | None = None, keyring: KeyRing | None = None,
                  new_passphrase: str | None = None, use_prepared: bool = False) -> MasterKey:
    """Re-wrap every data key under a new master key, in one transaction (see the module doc).

    The old key file goes to ``keys/retired/``: it is still needed to restore backups
    taken before the rotation. With ``use_prepared`` a valid ``master.key.new`` written
    by ``prepare_new_key`` is the new key.
    """
    kr = keyring or get_keyring()
    kr.verify_master()
    old = kr.master
    if old.source == "env":
        raise MasterKeyError(
            "The master key comes from $APPLIANCE_MASTER_KEY, which this command cannot change. "
            "Rotate by moving to a key file first (write the current key to the key file, unset "
            "the variable), or re-wrap under a new key with your secret manager's procedure."
        )
    keys_dir = (old.path or key_file_path(instance)).parent
    with rotation_lock(keys_dir) as mine:
        if not mine:
            raise MasterKeyError(
                f"Another 'appliance keys rotate-master' is running on this host (it holds "
                f"{keys_dir / LOCK_NAME}): wait for it to finish, then check 'appliance keys status'.")
        return _rotate_locked(instance, kr, old, new_key, new_passphrase, use_prepared)


def _rotate_locked(instance, kr, old, new_key, new_passphrase, use_prepared) -> MasterKey:
    path = old.path
    pending = pending_path(path)
    if old.source == "passphrase":
        if not new_passphrase:
            raise MasterKeyError("A passphrase-derived master key rotates to a new passphrase: give one.")
        write_secret_file(pending, new_salt_document(), overwrite=True)
        new = MasterKey(derive_from_passphrase(new_passphrase, pending), "passphrase", path)
    else:
        prepared = _read_file_key(pending) if use_prepared and new_key is None else None
        if prepared is not None and prepared.key_id != old.key_id:
            new = MasterKey(prepared.key, "file", path)
        else:
            new_key = new_key or generate_key()
            write_secret_file(pending, encode_key_file(new_key), overwrite=True)
            new = MasterKey(new_key, "file", path)
    _fsync_dir(pending.parent)
    _step("new-key-written")
    new_aead = type(kr.master_aead)(new.key)
    with write_transaction():
        # Taken first: a process creating a data key holds this row FOR SHARE while it
        # wraps, so no key can be wrapped under the old master key and land after this.
        query = CryptoMaster.select().order_by(CryptoMaster.id)
        master_row = (query.for_update() if is_postgres() else query).first()
        if master_row.master_key_id != old.key_id:
            # Another host rotated since this command loaded its key (hosts share no lock).
            raise MasterKeyError(
                f"The master key was rotated meanwhile (the database now needs {master_row.master_key_id}), "
                f"probably from another app host; nothing was changed here. Check 'appliance keys status' "
                f"before rotating again.")
        for row in TenantKey.select():
            raw = unwrap_key(kr.master_aead, row.wrapped, row.tenant_id, row.key_id, row.version, row.purpose)
            row.wrapped = wrap_key(new_aead, raw, row.tenant_id, row.key_id, row.version, row.purpose)
            row.save(only=[TenantKey.wrapped])
        master_row.master_key_id = new.key_id
        master_row.rotated_at = _now()
        master_row.save()
        _step("rewrapped")
    _step("committed")
    kr.replace_master(new)
    promote(path, old.key_id)
    log.info("master key rotated: %s -> %s", old.key_id, new.key_id)
    return new

