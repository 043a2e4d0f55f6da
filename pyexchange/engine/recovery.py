"""Recovery: the newest valid snapshot, then the journal after it.

The result has the same state digest as the engine had before the crash, as
far as the journal goes: every journaled command is replayed, in order, with
the time it was stamped with, through the batch API (no Python per command).
Where the journal recorded a digest, the replayed state is checked against it.
A torn tail is cut (and reported); anything else damaged stops recovery, and so
does a data directory of an earlier format (``OldFormat``), never half-read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from matchcore import Engine

from .idempotency import IdempotencyTable
from .journal import (
    OLD_FORMAT_ADVICE,
    CorruptJournal,
    EngineConfig,
    OldFormat,
    ReadReport,
    RecordKind,
    commands_after,
    read_journal,
    read_segment_header,
)
from .snapshots import CorruptSnapshot, list_snapshots, read_snapshot

log = logging.getLogger(__name__)

OLD_ENGINE_STATE = b"MCSTATE\x02"  # a snapshot of format 2 (journal.OLD_FORMAT_ADVICE)


def journal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "journal"


def snapshot_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


@dataclass
class Recovered:
    """An engine rebuilt from disk, and how."""

    engine: Engine
    next_seq: int
    idempotency: IdempotencyTable
    snapshot_seq: int = 0
    replayed_commands: int = 0
    digests_checked: int = 0
    journal: ReadReport = field(default_factory=ReadReport)
    skipped_snapshots: list[str] = field(default_factory=list)

    @property
    def journal_continues(self) -> bool:
        """The journal ends right before ``next_seq``, so new records may follow in its
        last segment (otherwise a power cut left it behind the snapshot: start a new one)."""
        end = self.journal.last_seq
        return end is None or end == self.next_seq - 1


def recover(
    data_dir: Path,
    config: EngineConfig | None = None,
    *,
    repair: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Recovered:
    """Rebuild the engine of ``data_dir`` (an empty directory gives a new engine of ``config``).

    ``progress(done, total)`` is called once the snapshot is chosen (``done`` 0) and after
    each record replayed: ``total`` estimates the commands after the snapshot
    (``journal.commands_after``, an upper bound), ``done`` counts those replayed.
    """
    engine: Engine | None = None
    idempotency = IdempotencyTable()
    snapshot_seq = 0
    skipped: list[str] = []
    for path in list_snapshots(snapshot_dir(data_dir)):
        try:
            snapshot = read_snapshot(path)
            if snapshot.engine_state.startswith(OLD_ENGINE_STATE):
                raise OldFormat(f"{path.name}: a snapshot {OLD_FORMAT_ADVICE}")
            engine = Engine.restore(snapshot.engine_state)
            idempotency = IdempotencyTable.decode(snapshot.idempotency)
            snapshot_seq = snapshot.seq
            break
        except (CorruptSnapshot, ValueError) as exc:
            log.warning("skipping snapshot %s", exc)
            skipped.append(str(exc))

    if progress is not None:
        total = commands_after(journal_dir(data_dir), snapshot_seq)
        progress(0, total)
    report = ReadReport()
    records = read_journal(
        journal_dir(data_dir), repair=repair, report=report, covered_through=snapshot_seq
    )
    next_seq = snapshot_seq + 1
    replayed = 0
    digests = 0
    for record in records:
        if engine is None:
            engine = _new_engine(record.segment, config)
        if record.kind == RecordKind.DIGEST:
            if record.first_seq == next_seq - 1 and record.first_seq > snapshot_seq:
                if engine.digest() != bytes(record.body).hex():
                    raise CorruptJournal(
                        f"state digest differs from the journal's after seq {record.first_seq}"
                    )
                digests += 1
            continue
        if record.last_seq < next_seq:
            continue  # already in the snapshot
        if record.first_seq > next_seq:
            raise CorruptJournal(
                f"the journal jumps from seq {next_seq - 1} to {record.first_seq} "
                f"({'after the snapshot' if snapshot_seq else 'with no snapshot'})"
            )
        commands = record.commands()[next_seq - record.first_seq :]
        events = engine.process(commands)
        idempotency.record_batch(commands, events)
        replayed += len(commands)
        next_seq = record.last_seq + 1
        if progress is not None:
            progress(replayed, total)
    if engine is None and report.segments:  # segments that hold no record yet
        engine = _new_engine(report.segments[0], config)
    if engine is None:
        if config is None:
            raise FileNotFoundError(f"{data_dir}: no snapshot, no journal, and no configuration")
        engine = Engine(**config.engine_kwargs())
    if config is not None and EngineConfig.of(engine) != config:
        raise ValueError(
            f"{data_dir} holds an engine of {EngineConfig.of(engine)}, not the requested {config}"
        )
    return Recovered(
        engine, next_seq, idempotency, snapshot_seq, replayed, digests, report, skipped
    )


def _new_engine(segment: Path, config: EngineConfig | None) -> Engine:
    """The engine a journal without a usable snapshot starts from: its segment's config."""
    journal_config, first_seq, _ = read_segment_header(segment)
    if first_seq != 1:
        raise CorruptJournal(
            f"no usable snapshot, and the journal starts at seq {first_seq}, not 1: "
            "the commands before it are gone"
        )
    if config is not None and config != journal_config:
        raise ValueError(f"the journal was written for {journal_config}, not {config}")
    return Engine(**journal_config.engine_kwargs())
