"""The archive format on its own: streaming round trip, and every way of altering a file refused."""

from __future__ import annotations

import io
import os

import pytest

from appliance.core.backup.archive import (
    ArchiveReader,
    ArchiveWriter,
    Tampered,
    WrongKey,
    read_header,
)

KEY = bytes(range(32))
OTHER = bytes(32)
KEY_ID, OTHER_ID = "k-right", "k-other"
FIELDS = dict(created_at="2030-04-17T09:30:00+00:00", app_version="0.1.0", schema_version=5,
              master_key_id=KEY_ID, database_kind="sqlite")


def _write(tmp_path, payload: bytes, chunk=1000):
    path = tmp_path / "a.apbk"
    writer = ArchiveWriter(path, KEY, KEY_ID, chunk_size=chunk)
    writer.add_part("database", io.BytesIO(payload))
    writer.add_part("identity", io.BytesIO(b"{}"))
    writer.close(**FIELDS)
    return path


def _read(path, part="database"):
    return b"".join(ArchiveReader(path, KEY, KEY_ID).iter_part(part))


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 25_000])
def test_round_trip_at_chunk_boundaries(tmp_path, size):
    payload = os.urandom(size)
    path = _write(tmp_path, payload)
    assert _read(path) == payload
    assert _read(path, "identity") == b"{}"
    m = ArchiveReader(path, KEY, KEY_ID).manifest
    assert m.part("database").plain_bytes == size and m.schema_version == 5
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_no_plaintext_and_no_key_in_the_file(tmp_path):
    payload = b"Erika Mustermann erika@example.org " * 200
    data = _write(tmp_path, payload).read_bytes()
    assert b"Mustermann" not in data and b"erika@" not in data
    assert KEY not in data


def test_wrong_key_is_named_before_any_decryption(tmp_path):
    path = _write(tmp_path, b"x" * 5000)
    with pytest.raises(WrongKey, match="k-right"):
        ArchiveReader(path, OTHER, OTHER_ID)
    # same id claimed, different key: the manifest MAC fails
    with pytest.raises(Tampered, match="MAC"):
        ArchiveReader(path, OTHER, KEY_ID)


def test_every_single_byte_flip_is_detected(tmp_path):
    path = _write(tmp_path, os.urandom(3500))
    original = path.read_bytes()
    header_end = 8 + 4 + int.from_bytes(original[8:12], "big")
    # Every byte after the magic: header, chunk lengths, ciphertext, tags, manifest, MAC, trailer.
    for pos in range(8, len(original), 7):
        damaged = bytearray(original)
        damaged[pos] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(Exception) as info:
            _read(path)
            _read(path, "identity")
        assert info.type.__name__ in {"Tampered", "WrongKey", "ArchiveError"}, (pos, header_end, info.value)


def test_truncation_and_chunk_reordering_are_detected(tmp_path):
    path = _write(tmp_path, os.urandom(5000))
    original = path.read_bytes()
    for cut in (1, 16, 48, len(original) // 2):
        path.write_bytes(original[:-cut])
        with pytest.raises(Tampered):
            _read(path)
    # Swap two equal-length chunks of the database part: same bytes, wrong order.
    path.write_bytes(original)
    part = ArchiveReader(path, KEY, KEY_ID).manifest.part("database")
    rec = 4 + 1000 + 16  # length prefix, one chunk of ciphertext, its tag
    start = part.offset
    swapped = (original[:start] + original[start + rec:start + 2 * rec] + original[start:start + rec]
               + original[start + 2 * rec:])
    path.write_bytes(swapped)
    with pytest.raises(Tampered):
        _read(path)


def test_header_is_readable_without_the_key(tmp_path):
    path = _write(tmp_path, b"abc")
    assert read_header(path)["master_key_id"] == KEY_ID
