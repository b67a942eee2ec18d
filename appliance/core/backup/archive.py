"""The backup archive: parts encrypted as streams, a manifest MACed, keys derived from the master key.

Layout of one ``.apbk`` file::

    MAGIC | u32 n | header (n bytes of JSON: format, archive id, salt, master key id)
    part 1: records  u32 n | n bytes of AES-256-GCM ciphertext   (one per chunk)
    part 2: ...
    manifest: u32 n | n bytes of JSON | 32-byte HMAC-SHA256 of those bytes
    TRAILER: u64 offset of the manifest | END_MAGIC

Each part has its own key, HKDF(master key, salt, "part:<name>"), so nonces never
repeat across parts or archives. The nonce is STREAM's: an 11-byte chunk counter and
one byte that is 1 only on the last chunk. Reordered, dropped or appended chunks fail
to decrypt, and a part cut short lacks its final chunk, so truncation is an error,
not a shorter database. The manifest (sizes, offsets and SHA-256 of each part's
plaintext, schema and app version) is MACed with HKDF(master key, salt, "manifest"):
without the right master key nothing in an archive can be read or forged. The master
key itself is never written into an archive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"APPLBK\x00\x01"
END_MAGIC = b"APBK-END"
FORMAT_VERSION = 1
SUFFIX = ".apbk"
DEFAULT_CHUNK = 1024 * 1024
_U32 = struct.Struct(">I")
_TRAILER = struct.Struct(">Q8s")
_TAG = 16
MAX_HEADER = 64 * 1024
MAX_MANIFEST = 4 * 1024 * 1024

Progress = Callable[[int], None] | None


class ArchiveError(RuntimeError):
    """The archive cannot be used; the message says why and what to do."""


class WrongKey(ArchiveError):
    """The archive was made under another master key."""


class Tampered(ArchiveError):
    """The archive's manifest or a part failed its MAC: altered, truncated or damaged."""


def _derive(master_key: bytes, salt: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=f"appliance backup v1 {label}".encode()).derive(master_key)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


@dataclass
class PartInfo:
    name: str
    offset: int
    stored_bytes: int
    plain_bytes: int
    sha256: str
    chunks: int


@dataclass
class Manifest:
    """What an archive holds, as written into (and MACed inside) it."""

    format_version: int
    archive_id: str
    created_at: str
    app_version: str
    schema_version: int
    master_key_id: str
    database_kind: str
    parts: list[PartInfo] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def part(self, name: str) -> PartInfo:
        for p in self.parts:
            if p.name == name:
                return p
        raise ArchiveError(f"the archive has no part {name!r}")

    def to_json(self) -> bytes:
        doc = dict(self.__dict__)
        doc["parts"] = [p.__dict__ for p in self.parts]
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        doc["parts"] = [PartInfo(**p) for p in doc["parts"]]
        return cls(**doc)


class ArchiveWriter:
    """Write an archive part by part; ``close(manifest fields)`` seals it.

    Written to ``path + '.partial'`` and renamed only when complete, so a crash
    never leaves something that looks like a finished archive.
    """

    def __init__(self, path: Path, master_key: bytes, master_key_id: str,
                 chunk_size: int = DEFAULT_CHUNK):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.master_key = master_key
        self.chunk_size = chunk_size
        self.salt = secrets.token_bytes(16)
        self.archive_id = str(uuid.uuid4())
        self.parts: list[PartInfo] = []
        self.header = json.dumps({
            "format_version": FORMAT_VERSION, "archive_id": self.archive_id,
            "salt": base64.b64encode(self.salt).decode(), "master_key_id": master_key_id,
            "chunk_size": chunk_size,
        }, sort_keys=True).encode()
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.fh = os.fdopen(fd, "wb")
        self.fh.write(MAGIC + _U32.pack(len(self.header)) + self.header)

    def add_part(self, name: str, source: BinaryIO, progress: Progress = None) -> PartInfo:
        """Encrypt ``source`` as the stream ``name``, reading one chunk at a time."""
        aead = AESGCM(_derive(self.master_key, self.salt, f"part:{name}"))
        aad = f"{self.archive_id}\x1f{name}".encode()
        digest = hashlib.sha256()
        offset = self.fh.tell()
        counter = plain = 0
        chunk = source.read(self.chunk_size)
        while True:
            following = source.read(self.chunk_size) if chunk else b""
            last = not following
            digest.update(chunk)
            sealed = aead.encrypt(_nonce(counter, last), chunk, aad)
            self.fh.write(_U32.pack(len(sealed)) + sealed)
            counter += 1
            plain += len(chunk)
            if progress:
                progress(len(chunk))
            if last:
                break
            chunk = following
        info = PartInfo(name, offset, self.fh.tell() - offset, plain, digest.hexdigest(), counter)
        self.parts.append(info)
        return info

    def close(self, **fields) -> Manifest:
        manifest = Manifest(format_version=FORMAT_VERSION, archive_id=self.archive_id,
                            parts=self.parts, **fields)
        body = manifest.to_json()
        mac = hmac.new(_derive(self.master_key, self.salt, "manifest"),
                       self.header + body, hashlib.sha256).digest()
        offset = self.fh.tell()
        self.fh.write(_U32.pack(len(body)) + body + mac)
        self.fh.write(_TRAILER.pack(offset, END_MAGIC))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        return manifest

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


def read_header(path: Path) -> dict:
    """The unauthenticated header (archive id, salt, master key id): enough to name the wrong key."""
    with open(path, "rb") as fh:
        if fh.read(len(MAGIC)) != MAGIC:
            raise ArchiveError(f"{path} is not an appliance backup archive (bad magic bytes).")
        return _read_header(fh, path)[0]


def _read_header(fh, path) -> tuple[dict, bytes]:
    raw = fh.read(4)
    if len(raw) != 4:
        raise Tampered(f"{path} is truncated (no header).")
    (n,) = _U32.unpack(raw)
    if n > MAX_HEADER:
        raise Tampered(f"{path} has a damaged header.")
    header_bytes = fh.read(n)
    try:
        header = json.loads(header_bytes)
        header["salt_bytes"] = base64.b64decode(header["salt"])
    except (ValueError, KeyError, TypeError):
        raise Tampered(f"{path} has a damaged header.") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(f"{path} has archive format {header.get('format_version')}; "
                           f"this version reads format {FORMAT_VERSION}.")
    return header, header_bytes


class ArchiveReader:
    """Open an archive with the master key: checks key and manifest MAC before anything else."""

    def __init__(self, path: Path, master_key: bytes, master_key_id: str):
        self.path = Path(path)
        self.master_key = master_key
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            raise ArchiveError(f"{path} does not exist.") from None
        with open(self.path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ArchiveError(f"{path} is not an appliance backup archive (bad magic bytes).")
            self.header, header_bytes = _read_header(fh, path)
            if self.header.get("master_key_id") != master_key_id:
                raise WrongKey(
                    f"{path} was made under master key {self.header.get('master_key_id')}, "
                    f"but this instance's master key is {master_key_id}. Restore the right key "
                    "first ('appliance keys import-recovery KIT' with the recovery kit of the "
                    "instance that made the backup, or a retired key file from keys/retired/).")
            self.salt = self.header["salt_bytes"]
            if size < fh.tell() + _TRAILER.size:
                raise Tampered(f"{path} is truncated (no manifest): take or pick another backup.")
            fh.seek(size - _TRAILER.size)
            offset, end = _TRAILER.unpack(fh.read(_TRAILER.size))
            if end != END_MAGIC or offset >= size:
                raise Tampered(f"{path} is truncated or damaged (no end marker): pick another backup.")
            fh.seek(offset)
            raw = fh.read(4)
            (n,) = _U32.unpack(raw) if len(raw) == 4 else (MAX_MANIFEST + 1,)
            if n > MAX_MANIFEST or offset + 4 + n + 32 + _TRAILER.size != size:
                raise Tampered(f"{path} has a damaged manifest: pick another backup.")
            body = fh.read(n)
            mac = fh.read(32)
        expected = hmac.new(_derive(master_key, self.salt, "manifest"),
                            header_bytes + body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise Tampered(f"{path} failed its integrity check (manifest MAC): it was altered or "
                           "damaged. Nothing was restored; pick another backup.")
        self.manifest = Manifest.from_json(body)
        if self.manifest.archive_id != self.header["archive_id"]:
            raise Tampered(f"{path}: the manifest does not belong to this archive.")

    def iter_part(self, name: str, progress: Progress = None) -> Iterator[bytes]:
        """Decrypted chunks of one part; raises Tampered on any altered, missing or extra chunk."""
        info = self.manifest.part(name)
        aead = AESGCM(_derive(self.master_key, self.salt, f"part:{name}"))
        aad = f"{self.manifest.archive_id}\x1f{name}".encode()
        digest = hashlib.sha256()
        end = info.offset + info.stored_bytes
        with open(self.path, "rb") as fh:
            fh.seek(info.offset)
            counter = 0
            while fh.tell() < end:
                raw = fh.read(4)
                (n,) = _U32.unpack(raw) if len(raw) == 4 else (0,)
                # The chunk size is in the MACed header: a larger record is damage, not a reason to allocate.
                sealed = fh.read(n) if _TAG <= n <= self.header["chunk_size"] + _TAG else b""
                if len(sealed) < _TAG or fh.tell() > end:
                    raise Tampered(f"{self.path}: part {name!r} is damaged at chunk {counter}.")
                last = fh.tell() == end
                try:
                    chunk = aead.decrypt(_nonce(counter, last), sealed, aad)
                except InvalidTag:
                    raise Tampered(f"{self.path}: part {name!r} failed its integrity check at chunk "
                                   f"{counter} (altered or truncated). Nothing was restored.") from None
                digest.update(chunk)
                counter += 1
                if progress:
                    progress(len(chunk))
                yield chunk
        if counter != info.chunks or digest.hexdigest() != info.sha256:
            raise Tampered(f"{self.path}: part {name!r} does not match its manifest checksum.")

    def extract_part(self, name: str, dest: Path, progress: Progress = None) -> Path:
        """Decrypt a part to ``dest`` (0600); the file is removed again if the part fails."""
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_part(name, progress):
                    out.write(chunk)
        except BaseException:
            Path(dest).unlink(missing_ok=True)
            raise
        return Path(dest)

    def check(self, progress: Progress = None) -> None:
        """Decrypt every part without writing it anywhere."""
        for p in self.manifest.parts:
            for _ in self.iter_part(p.name, progress):
                pass
