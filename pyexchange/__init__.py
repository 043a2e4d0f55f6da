"""pyexchange: the service around the matching core, in wings whose imports only go down.

- ``pyexchange.engine``: the engine loop (sequencer, journal, snapshots, recovery,
  idempotency), no transport;
- ``pyexchange.feeds``: market data and drop copy, fed by the engine's events;
- ``pyexchange.service``: order entry, queries, admin and auth for every API;
- ``pyexchange.api.grpc``: the gRPC API (protos, servicers, the client);
- ``pyexchange.app``: the server, the command line, the console and the demo bots;
- ``pyexchange.units`` and ``pyexchange.metrics``: for every floor.

app -> api -> service -> feeds / engine -> matchcore; nothing below imports an API.
The engine's main names are re-exported here.
"""

from .engine import (
    CorruptJournal,
    CorruptSnapshot,
    EngineConfig,
    Exchange,
    FsyncPolicy,
    IdempotencyTable,
    JournalWriter,
    OldFormat,
    Recovered,
    Sequencer,
    SequencerStopped,
    SnapshotPolicy,
    read_journal,
    recover,
)

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
