"""pyexchange: the service around the matching core.

Sequencer and write-ahead journal, snapshots, crash recovery and idempotent
order entry today (DESIGN.md §6); gRPC APIs, market data and the distributed
mode build on them.
"""

from .exchange import Exchange
from .idempotency import IdempotencyTable
from .journal import CorruptJournal, EngineConfig, FsyncPolicy, JournalWriter, read_journal
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
    "Recovered",
    "Sequencer",
    "SequencerStopped",
    "SnapshotPolicy",
    "read_journal",
    "recover",
]
