"""``pyexchange``: the command line of the service.

pyexchange replay DATA_DIR             rebuild the state, print its digest and a summary
pyexchange journal inspect DATA_DIR    records, sequence ranges, checksums, torn tail
pyexchange snapshot DATA_DIR           rebuild and write a snapshot at the last seq
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from .journal import CorruptJournal, ReadReport, RecordKind, read_journal
from .recovery import journal_dir, recover, snapshot_dir
from .snapshots import list_snapshots, read_snapshot, write_snapshot


def _journal_commands(data_dir: Path) -> int:
    """Commands in the journal (a quick scan of record headers would do; this reads it)."""
    report = ReadReport()
    for _ in read_journal(journal_dir(data_dir), report=report):
        pass
    return report.commands


def cmd_replay(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    started = time.perf_counter()
    with tqdm(
        total=_journal_commands(data_dir),
        unit="cmd",
        unit_scale=True,
        desc="replay",
        disable=args.quiet,
    ) as bar:
        recovered = recover(
            data_dir, repair=not args.dry_run, progress=lambda done: bar.update(done - bar.n)
        )
    seconds = time.perf_counter() - started
    engine = recovered.engine
    markets = [m for m in (engine.market(i) for i in range(engine.capacities["max_markets"])) if m]
    totals = engine.totals()
    print(f"digest        {engine.digest()}")
    print(f"last seq      {recovered.next_seq - 1}")
    print(f"snapshot seq  {recovered.snapshot_seq}")
    print(
        f"replayed      {recovered.replayed_commands:,} commands in {seconds:.2f} s"
        f" ({recovered.replayed_commands / max(seconds, 1e-9):,.0f}/s)"
    )
    print(f"digests       {recovered.digests_checked} checked against the journal")
    print(f"engine time   {engine.now}")
    print(f"markets       {len(markets)}; resting orders {engine.order_count:,}")
    print(
        f"money         net deposits {totals.net_deposits:,}, fees {totals.fees:,}, "
        f"collateral {totals.collateral:,} (micro-dollars)"
    )
    if recovered.journal.torn_tail:
        print(
            f"torn tail     {recovered.journal.torn_tail} "
            f"({'kept: dry run' if args.dry_run else 'cut'})"
        )
    for skipped in recovered.skipped_snapshots:
        print(f"skipped       {skipped}")
    engine.validate()
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    report = ReadReport()
    status = 0
    current: Path | None = None
    try:
        for record in read_journal(journal_dir(data_dir), report=report):
            if record.segment != current:
                current = record.segment
                print(f"segment {current.name}")
            if args.records:
                what = (
                    f"batch   seq {record.first_seq}..{record.last_seq} ({record.count})"
                    if record.kind == RecordKind.BATCH
                    else f"digest  after seq {record.first_seq}: {bytes(record.body).hex()}"
                )
                print(f"  @{record.offset:<12} {what}  crc ok")
    except CorruptJournal as exc:
        print(f"CORRUPT: {exc}")
        status = 2
    print(f"segments      {len(report.segments)}")
    print(f"records       {report.records:,} (checksums verified)")
    print(f"commands      {report.commands:,}, seq {report.first_seq}..{report.last_seq}")
    print(f"torn tail     {report.torn_tail or 'none'}")
    for path in list_snapshots(snapshot_dir(data_dir)):
        try:
            snap = read_snapshot(path)
            print(
                f"snapshot      {path.name}: seq {snap.seq}, {len(snap.engine_state):,} bytes, ok"
            )
        except Exception as exc:  # report every kind of damage, keep listing
            print(f"snapshot      {path.name}: {exc}")
    return status


def cmd_snapshot(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    recovered = recover(data_dir)
    seq = recovered.next_seq - 1
    path = write_snapshot(
        snapshot_dir(data_dir), seq, recovered.engine.snapshot(), recovered.idempotency.encode()
    )
    print(f"wrote {path} at seq {seq} (digest {recovered.engine.digest()})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyexchange", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="rebuild the state from snapshot and journal")
    replay.add_argument("data_dir")
    replay.add_argument("--dry-run", action="store_true", help="do not cut a torn tail")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(run=cmd_replay)
    journal = sub.add_parser("journal", help="journal tools")
    journal_sub = journal.add_subparsers(dest="journal_command", required=True)
    inspect = journal_sub.add_parser("inspect", help="records, ranges, checksums")
    inspect.add_argument("data_dir")
    inspect.add_argument("--records", action="store_true", help="list every record")
    inspect.set_defaults(run=cmd_inspect)
    snapshot = sub.add_parser("snapshot", help="write a snapshot of the rebuilt state")
    snapshot.add_argument("data_dir")
    snapshot.set_defaults(run=cmd_snapshot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (CorruptJournal, FileNotFoundError, ValueError) as exc:
        print(f"pyexchange: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
