"""Engine snapshots on disk: atomic, checksummed, pruned by a retention policy.

``DATA_DIR/snapshots/<seq, 20 digits>.snapshot`` holds the engine state after
command ``seq`` (``Engine.snapshot()`` bytes) and the idempotency table at that
point, behind a header with both lengths and a CRC32C of everything. A file is
written under a temporary name, fsynced, renamed into place and the directory
fsynced, so a crash leaves either the old set of snapshots or the new one,
never a half-written file under a real name.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from .journal import _fsync_dir

MAGIC = b"MCSNAP\x00\x01"
_HEADER = struct.Struct("<8sQQQI")  # magic, seq, engine bytes, idempotency bytes, crc32c


class CorruptSnapshot(Exception):
    """A snapshot file that fails its checks (recovery falls back to an older one)."""


@dataclass(frozen=True)
class Snapshot:
    seq: int
    engine_state: bytes
    idempotency: bytes
    path: Path


def snapshot_path(directory: Path, seq: int) -> Path:
    return Path(directory) / f"{seq:020d}.snapshot"


def write_snapshot(directory: Path, seq: int, engine_state: bytes, idempotency: bytes) -> Path:
    """Write a snapshot atomically; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    crc = google_crc32c.extend(google_crc32c.value(engine_state), idempotency)
    header = _HEADER.pack(MAGIC, seq, len(engine_state), len(idempotency), crc)
    final = snapshot_path(directory, seq)
    temporary = final.with_suffix(".tmp")
    with open(temporary, "wb") as f:
        f.write(header)
        f.write(engine_state)
        f.write(idempotency)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    _fsync_dir(directory)
    return final


def read_snapshot(path: Path) -> Snapshot:
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise CorruptSnapshot(f"{path.name}: shorter than its header")
    magic, seq, engine_bytes, idempotency_bytes, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptSnapshot(f"{path.name}: not a snapshot of this format")
    if len(data) != _HEADER.size + engine_bytes + idempotency_bytes:
        raise CorruptSnapshot(f"{path.name}: {len(data)} bytes, the header promises more or less")
    engine_state = data[_HEADER.size : _HEADER.size + engine_bytes]
    idempotency = data[_HEADER.size + engine_bytes :]
    if google_crc32c.extend(google_crc32c.value(engine_state), idempotency) != crc:
        raise CorruptSnapshot(f"{path.name}: checksum mismatch")
    return Snapshot(seq, engine_state, idempotency, Path(path))


def list_snapshots(directory: Path) -> list[Path]:
    """Snapshot files, newest first (temporary files of an interrupted write are ignored)."""
    return sorted(Path(directory).glob("*.snapshot"), reverse=True)


def prune_snapshots(directory: Path, keep: int) -> list[Path]:
    """Keep the ``keep`` newest snapshots; returns the removed paths."""
    removed = list_snapshots(directory)[keep:]
    for path in removed:
        path.unlink()
    for stale in Path(directory).glob("*.tmp"):
        stale.unlink()
    return removed
