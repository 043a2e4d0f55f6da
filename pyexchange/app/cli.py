"""``pyexchange``: the command line of the service.

pyexchange serve [--config FILE]       run the exchange (gRPC), demo markets and keys on first start
pyexchange serve --demo                also run market-making and taking bots (or: pyexchange demo)
pyexchange book MARKET [--watch]       the L2 book; `orders`, `trade`, `cancel`: a small client
pyexchange replay DATA_DIR             rebuild the state, print its digest and a summary
pyexchange journal inspect DATA_DIR    records, sequence ranges, checksums, torn tail
pyexchange snapshot DATA_DIR           rebuild and write a snapshot at the last seq
pyexchange keys create --account N     a new API key (Ed25519, for the Polymarket US API)
pyexchange maintenance on|off|status   the venue's maintenance sequence on the running server
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tqdm import tqdm

from matchcore import MarketState

from ..engine.journal import (
    CorruptJournal,
    DataDirInUse,
    DataDirLock,
    ReadReport,
    RecordKind,
    read_journal,
)
from ..engine.recovery import journal_dir, recover, snapshot_dir
from ..engine.snapshots import list_snapshots, read_snapshot, write_snapshot

if TYPE_CHECKING:  # the server (grpc and all) is imported only by `serve`
    from .server import ExchangeServer, ServerConfig


def cmd_replay(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    # Cutting a torn tail writes: never while an exchange runs on the directory.
    lock = None if args.dry_run else DataDirLock(data_dir)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        bar.total = max(total, done)  # the commands after the snapshot: what is replayed
        bar.update(done - bar.n)

    try:
        with tqdm(unit="cmd", unit_scale=True, desc="replay", disable=args.quiet) as bar:
            recovered = recover(data_dir, repair=not args.dry_run, progress=progress)
            bar.total = bar.n  # the estimate was an upper bound: end at 100%
            bar.refresh()
    finally:
        if lock is not None:
            lock.release()
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
                f"snapshot      {path.name}: seq {snap.seq}, {path.stat().st_size:,} bytes "
                f"(engine {len(snap.engine_state):,}, idempotency table "
                f"{len(snap.idempotency):,}), ok"
            )
        except Exception as exc:  # report every kind of damage, keep listing
            print(f"snapshot      {path.name}: {exc}")
    return status


def cmd_snapshot(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir)
    lock = DataDirLock(data_dir)  # never while an exchange runs on the directory
    try:
        recovered = recover(data_dir)
        seq = recovered.next_seq - 1
        engine, idempotency = recovered.engine, recovered.idempotency
        path = write_snapshot(snapshot_dir(data_dir), seq, engine.snapshot(), idempotency.encode())
    finally:
        lock.release()
    print(f"wrote {path} at seq {seq} (digest {engine.digest()})")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    """A new API key in the data directory's keys file; a running server takes it at its
    first use. Ed25519 (the Polymarket US API) by default: prints the key id and the
    base64 secret, which only the holder keeps (the file gets the public key)."""
    from ..service.auth import ADMIN, PERMISSIONS, ApiKey, KeyStore, new_secret, venue_key

    path = Path(args.keys_file) if args.keys_file else Path(args.data_dir) / "keys.json"
    store = KeyStore.load(path) if path.exists() else KeyStore()
    permissions = frozenset(p.strip() for p in args.permissions.split(",") if p.strip())
    if not permissions <= PERMISSIONS:
        raise ValueError(f"permissions are {', '.join(sorted(PERMISSIONS))}")
    if args.hmac:
        accounts = frozenset() if args.account is None else frozenset({args.account})
        if not accounts and ADMIN not in permissions:
            raise ValueError("an HMAC key needs --account (or the admin permission)")
        key = ApiKey(
            f"{args.name or 'key'}-{secrets.token_hex(4)}",
            new_secret(),
            permissions,
            accounts,
            args.rate,
            args.burst,
            name=args.name or "",
        )
        secret = key.secret
    else:
        if args.account is None:
            raise ValueError("an Ed25519 key acts for one account: give --account")
        key = venue_key(
            args.account, args.rate, args.burst, name=args.name, permissions=permissions
        )
        secret = key.secret
        if not args.keep_secret:
            key = dataclasses.replace(key, secret="")
    if args.name and any(k.name == args.name for k in store):
        raise ValueError(f"a key named {args.name!r} exists in {path}")
    store.add(key)
    store.save(path)
    print(f"key_id  {key.key_id}")
    print(f"secret  {secret}")
    print(
        f"scheme  {key.scheme}, account {args.account}, permissions "
        f"{'+'.join(sorted(permissions))}, {args.rate:g}/s burst {args.burst}, in {path}"
    )
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Start or end maintenance on the running server (its venue API's admin endpoint),
    signed with the data directory's admin key."""
    import json
    import urllib.error
    import urllib.request

    from ..api.rest.maintenance import PATH, admin_headers
    from ..service.auth import ADMIN, HMAC, KeyStore

    data_dir = Path(args.data_dir)
    url = args.url
    if url is None:
        try:
            url = json.loads((data_dir / "server.json").read_text())["http"]
        except (OSError, ValueError, KeyError):
            url = None
    if not url:
        print(f"pyexchange: no running server with a venue API in {data_dir}", file=sys.stderr)
        return 2
    store = KeyStore.load(Path(args.keys_file) if args.keys_file else data_dir / "keys.json")
    key = next(
        (k for k in store if k.scheme == HMAC and k.may(ADMIN) and args.key in (None, k.name)),
        None,
    )
    if key is None:
        print("pyexchange: no admin key in the keys file", file=sys.stderr)
        return 2
    body = (
        b""
        if args.action == "status"
        else json.dumps({"maintenance": args.action == "on"}).encode()
    )
    method = "GET" if args.action == "status" else "POST"
    request = urllib.request.Request(
        url + PATH,
        data=body or None,
        method=method,
        headers={**admin_headers(key.key_id, key.secret, method, PATH, body),
                 "content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            state = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        print(f"refused: {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pyexchange: cannot reach {url}: {exc}", file=sys.stderr)
        return 2
    print("maintenance " + ("on" if state["maintenance"] else "off"))
    return 0


def _serve_config(args: argparse.Namespace) -> ServerConfig:
    from .server import ServerConfig

    config = ServerConfig.from_file(args.config) if args.config else ServerConfig()
    if args.data_dir is not None:
        config.data_dir = Path(args.data_dir)
    if args.host is not None:
        config.host = args.host
    if args.port is not None:
        config.port = args.port
    if args.metrics_port is not None:
        config.metrics_port = None if args.metrics_port < 0 else args.metrics_port
    elif not args.config:
        config.metrics_port = 9464
    if args.http_port is not None:
        config.http_port = None if args.http_port < 0 else args.http_port
    if args.catalogue is not None:
        config.catalogue_file = Path(args.catalogue)
    if args.fsync is not None:
        config.fsync = args.fsync
    if args.no_demo_setup:
        config.demo = False
    return config


def _print_banner(server: ExchangeServer, show_secrets: bool) -> None:
    from .console import local_target

    config = server.config
    print(f"pyexchange: listening on {config.host}:{server.port}", flush=False)
    print(f"  data      {Path(config.data_dir).resolve()}  (fsync {config.fsync})")
    if server.metrics_port:
        print(f"  metrics   http://{config.metrics_host}:{server.metrics_port}/metrics")
    specs = server.markets.specs
    if specs:
        states = {int(s): s.name for s in MarketState}
        listed = ", ".join(
            f"{m} ({states.get(s.state, s.state)}, tick {s.tick / 10_000:g})"
            for m, s in sorted(specs.items())[:10]
        )
        more = f" and {len(specs) - 10} more" if len(specs) > 10 else ""
        print(f"  markets   {listed}{more}")
    if server.http_port:
        url = f"http://{local_target(config.http_host or config.host, server.http_port)}"
        print(f"  venue API {url}  (Polymarket US REST + WebSocket; keys pm-trader-N)")
        if config.webview:
            print(f"  web view  {url}/  (books, trades, your orders, the engine's health)")
            mine = next((k for k in server.keys if k.name == "pm-trader-1" and k.secret), None)
            if mine is not None and show_secrets:  # a sign-in link: the key stays in the tab
                secret = quote(mine.secret, safe="")
                print(f"            {url}/#key={mine.key_id}&secret={secret}  (as pm-trader-1)")
    print(f"  keys      {config.keys_path.resolve()}")
    for key in server.keys:
        accounts = ",".join(map(str, sorted(key.accounts))) or "all"
        perms = "+".join(sorted(key.permissions))
        secret = (key.secret or "(not kept)") if show_secrets else "(in the keys file)"
        print(
            f"    {key.name or '-':<12} {perms:<16} accounts {accounts:<8} {key.key_id}  {secret}"
        )
    target = f"{config.host}:{server.port}"
    print(f'  client    ExchangeClient("{target}", KEY_ID, SECRET)  (pyexchange.api.grpc.client)')
    if server.http_port:
        print(
            f'            PolymarketUS(key_id=..., secret_key=..., gateway_base_url="{url}", '
            f'api_base_url="{url}")'
        )
    sys.stdout.flush()


def _print_hints(server: ExchangeServer, demo_plan: str | None) -> None:
    """What to do next: the demo bots, and client commands that find this server."""
    from .console import DEFAULT_DATA_DIR, DEFAULT_TARGET, local_target

    config = server.config
    options = []
    if Path(config.data_dir).resolve() != DEFAULT_DATA_DIR.resolve():
        options.append(f"--data-dir {config.data_dir}")
    elif server.port is not None and local_target(config.host, server.port) != DEFAULT_TARGET:
        options.append(f"--target {local_target(config.host, server.port)}")
    more = "".join(f" {o}" for o in options)
    if demo_plan:
        print(f"  demo      {demo_plan}")
    print(f"  try       pyexchange book 1 --watch{more}    (in another terminal)")
    print(f"            pyexchange orders{more}")
    print(f"            pyexchange trade buy-yes 1 0.50 10{more}")
    print(f"            pyexchange cancel --all{more}")
    sys.stdout.flush()


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import gc
    import signal

    from .server import ExchangeServer, configure_logging

    configure_logging(args.log_level)
    config = _serve_config(args)

    async def run() -> int:
        from .console import remove_endpoint, write_endpoint

        server = ExchangeServer(config)
        await server.start()
        assert server.port is not None
        # what start-up made lives as long as the server: out of the cyclic GC's reach, so
        # its full collections under load scan only what came after (BENCHMARKS.md, venue)
        gc.collect()
        gc.freeze()
        write_endpoint(
            config.data_dir, config.host, server.port, server.metrics_port, server.http_port
        )
        _print_banner(server, show_secrets=config.demo)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        tasks = []
        demo_plan = None
        if args.demo:
            from . import demo

            chosen = demo.plan(server)
            demo_plan = chosen.describe() if chosen else "no bots: no open market or trader key"
            tasks.append(asyncio.create_task(demo.run_bots(server)))
        _print_hints(server, demo_plan)
        await stop.wait()
        print("pyexchange: shutting down", flush=True)
        for task in tasks:  # the bots first: they cancel their orders while the server runs
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        remove_endpoint(config.data_dir)
        return 0

    try:  # uvloop: a cheaper event loop for gRPC and the REST API (BENCHMARKS.md)
        import uvloop
    except ImportError:
        return asyncio.run(run())
    return uvloop.run(run())


def cmd_cluster(args: argparse.Namespace) -> int:
    import json

    from . import cluster

    state_dir = Path(args.state_dir)
    if args.cluster_command == "up":
        config = cluster.ClusterConfig()
        if args.config:
            config = cluster.ClusterConfig.from_dict(json.loads(Path(args.config).read_text()))
        if args.shards is not None:
            config.shards = args.shards
        if args.no_demo:
            config.demo = False
        print(cluster.banner(cluster.up(state_dir, config, timeout=args.timeout)), flush=True)
        return 0
    if args.cluster_command == "down":
        left = cluster.down(state_dir, grace=args.grace)
        if left:
            print(f"pyexchange cluster: still running: {left}", file=sys.stderr)
            return 1
        print("pyexchange cluster: down")
        return 0
    bad = 0
    for name, code, body in cluster.status(state_dir):
        bad += code != 200
        print(f"{name:<6} {code or 'down'}  {json.dumps(body)}")
    return 1 if bad else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyexchange", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    serve_options = argparse.ArgumentParser(add_help=False)
    serve_options.add_argument(
        "--config", help="JSON file of ServerConfig fields (pyexchange/app/server.py)"
    )
    serve_options.add_argument(
        "--data-dir", help="journal, snapshots and keys (default ./exchange-data)"
    )
    serve_options.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve_options.add_argument("--port", type=int, help="gRPC port (default 50051; 0: a free port)")
    serve_options.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port (default 9464; -1: off)"
    )
    serve_options.add_argument(
        "--http-port",
        type=int,
        help="the Polymarket US API, REST and WebSocket (default 8080; 0: a free port; -1: off)",
    )
    serve_options.add_argument(
        "--catalogue", help="JSON file of markets, events and series to add (docs/venue_api.md)"
    )
    serve_options.add_argument(
        "--fsync", choices=["batch", "interval", "none"], help="journal fsync policy"
    )
    serve_options.add_argument(
        "--no-demo-setup",
        action="store_true",
        help="first start without demo markets, accounts and trader keys (an admin key only)",
    )
    serve_options.add_argument(
        "--log-level", default="INFO", help="JSON logs on stderr at this level"
    )
    serve = sub.add_parser(
        "serve",
        parents=[serve_options],
        help="run the exchange over gRPC (order entry, market data, drop copy, admin)",
        description="Run the exchange. With no options: data in ./exchange-data, demo markets, "
        "accounts and keys created on the first start, keys printed, gRPC on 127.0.0.1:50051, "
        "Prometheus metrics on 127.0.0.1:9464. SIGINT/SIGTERM stop it cleanly.",
    )
    serve.add_argument("--demo", action="store_true", help="also run the demo trading bots")
    serve.set_defaults(run=cmd_serve)
    demo = sub.add_parser(
        "demo",
        parents=[serve_options],
        help="serve --demo: the exchange with market-making and taking bots",
        description="`pyexchange serve --demo`: the exchange with market makers and takers "
        "trading its demo markets (pyexchange/app/demo.py); account 1 (key trader-1) is "
        "left to you.",
    )
    demo.set_defaults(run=cmd_serve, demo=True)
    from .console import add_client_commands

    add_client_commands(sub)
    keys = sub.add_parser("keys", help="API keys of a data directory")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create",
        help="a new key: Ed25519 for the Polymarket US API (default), or --hmac for gRPC",
        description="Add a key to DATA_DIR/keys.json and print its id and secret (a running "
        "server picks it up at its first use). The Ed25519 secret is printed once, in the "
        "base64 form the polymarket-us SDK takes as secret_key; the file keeps the public key.",
    )
    create.add_argument("--data-dir", default="exchange-data", help="default ./exchange-data")
    create.add_argument("--keys-file", help="default DATA_DIR/keys.json")
    create.add_argument("--account", type=int, help="the account the key acts for")
    create.add_argument("--name", help="a name to find it by (default pm-trader-ACCOUNT)")
    create.add_argument("--permissions", default="trade,read", help="default trade,read")
    create.add_argument("--rate", type=float, default=20.0, help="requests/s (default 20)")
    create.add_argument("--burst", type=int, default=20, help="token bucket size (default 20)")
    create.add_argument("--hmac", action="store_true", help="an HMAC key for the gRPC API")
    create.add_argument(
        "--keep-secret", action="store_true", help="also keep the Ed25519 secret in the file"
    )
    create.set_defaults(run=cmd_keys_create)
    maintenance = sub.add_parser(
        "maintenance",
        help="start or end maintenance (cancel all, 503, markets suspended; then reopen)",
    )
    maintenance.add_argument("action", choices=["on", "off", "status"])
    maintenance.add_argument("--data-dir", default="exchange-data", help="default ./exchange-data")
    maintenance.add_argument("--keys-file", help="default DATA_DIR/keys.json")
    maintenance.add_argument("--key", help="the admin key's name (default: the first admin key)")
    maintenance.add_argument(
        "--url", help="the venue API's base URL (default: DATA_DIR/server.json)"
    )
    maintenance.set_defaults(run=cmd_maintenance)
    cluster = sub.add_parser(
        "cluster",
        help="the cluster mode: NATS JetStream, sharded engines with standbys, gateways",
        description="Start, stop or check this host's cluster processes (docs/cluster.md).",
    )
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    cluster_up = cluster_sub.add_parser(
        "up",
        help="3 NATS nodes on free loopback ports, 2 shards with a standby each, 2 gateways",
        description="Start the cluster's processes in the background, print their endpoints "
        "and keys, record them in STATE_DIR/cluster.json. --config FILE: real NATS servers "
        "and this host's processes (docs/cluster.md, 'Running it').",
    )
    cluster_up.add_argument("--config", help="JSON: nats, shards, engines, gateways, keys, demo")
    cluster_up.add_argument("--shards", type=int, help="shard count of a new cluster (default 2)")
    cluster_up.add_argument("--no-demo", action="store_true", help="no demo markets, cash, keys")
    cluster_up.add_argument("--timeout", type=float, default=60.0, help="s per process start")
    cluster_down = cluster_sub.add_parser("down", help="stop every process `up` started here")
    cluster_down.add_argument("--grace", type=float, default=10.0, help="s before SIGKILL")
    cluster_sub.add_parser("status", help="the /health of every process")
    for command in (cluster_up, cluster_down, *cluster_sub.choices.values()):
        if not any(a.dest == "state_dir" for a in command._actions):
            command.add_argument(
                "--state-dir", default="cluster-data", help="default ./cluster-data"
            )
    cluster.set_defaults(run=cmd_cluster)
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
    except (CorruptJournal, DataDirInUse, FileNotFoundError, ValueError) as exc:
        print(f"pyexchange: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
