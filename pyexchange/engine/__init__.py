"""The engine loop, no transport: sequencer, write-ahead journal, snapshots, recovery.

``Exchange.open(data_dir)`` recovers the engine (newest snapshot plus journal)
and runs the sequencer, which journals each batch before the engine runs it
(DESIGN.md §6). Idempotent order entry (a repeated client order id) lives here
too, since its table travels in snapshots and is rebuilt on replay.
"""

from .exchange import Exchange
from .idempotency import IdempotencyTable
from .journal import (
    CorruptJournal,
    EngineConfig,
    FsyncPolicy,
    JournalWriter,
    OldFormat,
    read_journal,
)
from .recovery import Recovered, recover
from .sequencer import Sequencer, SequencerStopped, SnapshotPolicy
from .snapshots import CorruptSnapshot

__all__ = [
    "CorruptJournal",
    "CorruptSnapshot",
    "EngineConfig",
    "Exchange",
    "FsyncPolicy",
    "IdempotencyTable",
    "JournalWriter",
    "OldFormat",
    "Recovered",
    "Sequencer",
    "SequencerStopped",
    "SnapshotPolicy",
    "read_journal",
    "recover",
]
