"""The client half of the command line: ``pyexchange book | orders | trade | cancel`` over gRPC.

pyexchange book MARKET [--depth N] [--watch]       the L2 book (YES prices in dollars)
pyexchange orders [--account A]                    balance, positions and open orders
pyexchange trade buy-yes|sell-yes|buy-no|sell-no MARKET PRICE [QUANTITY]
                 [--ioc|--fok|--gtd SECONDS|--post-only] [--market [--cash DOLLARS]]
pyexchange cancel ORDER_ID | --all [--market M] | --client-id ID

Where they connect and with which key:

- the target is ``--target HOST:PORT``, else the one ``pyexchange serve`` wrote
  to ``DATA_DIR/server.json`` when it started, else ``127.0.0.1:50051``;
- the key is ``--key NAME`` (or a key id) looked up in ``DATA_DIR/keys.json``
  (``--data-dir``, default ``./exchange-data``), or ``--key KEY_ID --secret
  SECRET`` given in full. Without ``--key``: ``trader-A`` for ``--account A``,
  else ``trader-1`` (the demo bots leave account 1 to you), else the first key
  that has the permission.

Engine rejects are replies: the command prints ``rejected: REASON: message`` and
exits 1. A request refused before the engine (a price off the tick, a rate
limit, a bad key) prints its gRPC status and message and exits 1; a server that
cannot be reached, or no key, exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..api.grpc import exchange_pb2 as pb
    from ..api.grpc.client import ExchangeClient
    from ..service.auth import ApiKey

T = TypeVar("T")

DEFAULT_DATA_DIR = Path("exchange-data")
DEFAULT_TARGET = "127.0.0.1:50051"
ENDPOINT_FILE = "server.json"
INTENTS = {"buy-yes": "BUY_YES", "sell-yes": "SELL_YES", "buy-no": "BUY_NO", "sell-no": "SELL_NO"}
STP = {
    "reject-aggressor": "REJECT_AGGRESSOR",
    "cancel-resting": "CANCEL_RESTING",
    "cancel-both": "CANCEL_BOTH",
    "cancel-newest": "CANCEL_NEWEST",
    "cancel-oldest": "CANCEL_OLDEST",
    "remove-both": "REMOVE_BOTH",
}


class Usage(Exception):
    """Something the user must fix before a request is sent (exit 2)."""


# --------------------------------------------------------- target and keys


def local_target(host: str, port: int) -> str:
    """The address a client on this machine dials for a server listening on ``host:port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def write_endpoint(
    data_dir: Path,
    host: str,
    port: int,
    metrics_port: int | None,
    http_port: int | None = None,
) -> Path:
    """``DATA_DIR/server.json``: where the running server listens (read by the client commands):
    ``target`` (gRPC), ``http`` (the Polymarket US API's base URL, or null), ``metrics_port``."""
    path = Path(data_dir) / ENDPOINT_FILE
    data = {
        "target": local_target(host, port),
        "pid": os.getpid(),
        "metrics_port": metrics_port,
        "http": f"http://{local_target(host, http_port)}" if http_port else None,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data) + "\n")
    temporary.replace(path)
    return path


def remove_endpoint(data_dir: Path) -> None:
    """Remove ``server.json`` if this process wrote it."""
    path = Path(data_dir) / ENDPOINT_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def resolve_target(args: argparse.Namespace) -> str:
    if args.target:
        return str(args.target)
    path = Path(args.data_dir) / ENDPOINT_FILE
    try:
        return str(json.loads(path.read_text())["target"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_TARGET


def _keys_path(args: argparse.Namespace) -> Path:
    return Path(args.keys_file) if args.keys_file else Path(args.data_dir) / "keys.json"


def resolve_key(args: argparse.Namespace, permission: str, account: int | None) -> ApiKey:
    """The key to sign with (see the module docstring for the rules)."""
    from ..service.auth import HMAC, READ, TRADE, ApiKey, KeyStore

    if args.secret:
        if not args.key:
            raise Usage("--secret needs --key KEY_ID")
        accounts = frozenset() if account is None else frozenset({account})
        return ApiKey(args.key, args.secret, frozenset({TRADE, READ}), accounts)
    path = _keys_path(args)
    if not path.exists():
        raise Usage(
            f"no keys file at {path}: run `pyexchange serve` (it writes DATA_DIR/keys.json) "
            "and use the same --data-dir here, or pass --key KEY_ID --secret SECRET"
        )
    store = KeyStore.load(path)
    if args.key:
        for key in store:
            if args.key in (key.name, key.key_id):
                return key
        names = ", ".join(k.name or k.key_id for k in store)
        raise Usage(f"no key {args.key!r} in {path} (it has: {names})")
    usable = [  # gRPC calls are signed with HMAC keys; Ed25519 keys are the venue API's
        k
        for k in store
        if k.scheme == HMAC and k.may(permission) and (account is None or k.may_use(account))
    ]
    if not usable:
        who = f" for account {account}" if account is not None else ""
        raise Usage(f"no key with the {permission!r} permission{who} in {path}: pass --key")

    def preference(key: ApiKey) -> tuple[int, int, str]:
        single = len(key.accounts) == 1
        first = min(key.accounts) if key.accounts else 1 << 31
        return (0 if single else 1 if key.accounts else 2, first, key.name)

    return sorted(usable, key=preference)[0]


def _accounts_of(key: ApiKey, given: int | None, what: str) -> int:
    if given is not None:
        return given
    if len(key.accounts) == 1:
        return next(iter(key.accounts))
    listed = ",".join(map(str, sorted(key.accounts))) or "any"
    raise Usage(f"key {key.name or key.key_id} may {what} accounts {listed}: give --account")


# ------------------------------------------------------------- formatting


def _decimal(text: str) -> Decimal:
    return Decimal(text) if text else Decimal(0)


def _places(tick: str) -> int:
    """Decimals to show for prices on this tick, or like this price (at least 2)."""
    try:
        exponent = _decimal(tick or "0.01").normalize().as_tuple().exponent
    except ArithmeticError:
        return 2
    return max(2, -int(exponent))


def dollars(text: str, places: int | None = None) -> str:
    """``"-0.0022"`` -> ``"-$0.0022"``; ``"96994.4964"`` -> ``"$96,994.4964"``."""
    value = _decimal(text)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,}"


def shares(text: str) -> str:
    return f"{_decimal(text).normalize():,f}"


def _name(enum: Any, value: int) -> str:
    try:
        return str(enum.Name(value))
    except ValueError:
        return str(value)


def render_book(
    market: int,
    state: str,
    tick: str,
    market_seq: int,
    bids: list[tuple[str, str, int]],
    asks: list[tuple[str, str, int]],
    depth: int,
    trades: list[str] | None = None,
) -> str:
    """The book as a ladder: asks (farthest first) above the spread, bids (best first) below."""
    places = _places(tick)
    width = places + 5
    lines = [
        f"market {market}  {state}  tick {dollars(tick)}  market seq {market_seq}",
        "  YES prices in dollars; buying NO at p costs 1 - p",
        f"        {'price':>{width}}  {'shares':>12}  {'orders':>6}",
    ]

    def row(side: str, level: tuple[str, str, int]) -> str:
        price, quantity, orders = level
        return f"  {side}  {dollars(price, places):>{width}}  {shares(quantity):>12}  {orders:>6}"

    shown_asks = asks[:depth] if depth else asks
    shown_bids = bids[:depth] if depth else bids
    if not shown_asks:
        lines.append("  ask   (none)")
    lines.extend(row("ask ", level) for level in reversed(shown_asks))
    if bids and asks:
        best_bid, best_ask = _decimal(bids[0][0]), _decimal(asks[0][0])
        spread = dollars(str(best_ask - best_bid), places)
        mid = (best_bid + best_ask) / 2
        mid_places = places if mid == round(mid, places) else places + 1
        mid_text = dollars(str(mid), mid_places)
        lines.append(f"        ----- spread {spread}  mid {mid_text} -----")
    else:
        lines.append("        -----")
    lines.extend(row("bid ", level) for level in shown_bids)
    if not shown_bids:
        lines.append("  bid   (none)")
    hidden = max(0, len(bids) - len(shown_bids)) + max(0, len(asks) - len(shown_asks))
    if hidden:
        lines.append(f"  ({hidden} more level(s) beyond --depth {depth})")
    if trades is not None:
        lines.append("  last trades:" if trades else "  last trades: none yet")
        lines.extend(f"    {t}" for t in trades)
    return "\n".join(lines)


def _levels(levels: Any) -> list[tuple[str, str, int]]:
    return [(lv.price, lv.quantity, lv.orders) for lv in levels]


def render_reply(reply: pb.OrderReply, places: int = 2) -> tuple[str, int]:
    """A readable order reply and the exit status (1 for a reject)."""
    from ..api.grpc import exchange_pb2 as pb

    status = _name(pb.OrderStatus, reply.status)
    if reply.status == pb.REJECTED:
        return f"rejected: {reply.reject_reason}: {reply.message}", 1
    lines = [f"order {reply.order_id}: {status}  (seq {reply.seq})"]
    if reply.status in (pb.CANCELED, pb.PARTIALLY_FILLED) and reply.cancel_reason:
        lines[0] = f"order {reply.order_id}: {status} ({reply.cancel_reason})  (seq {reply.seq})"
        lines.append(f"  {reply.message}")
    lines.append(
        f"  filled {shares(reply.filled_quantity or '0')}, "
        f"resting {shares(reply.leaves_quantity or '0')}"
    )
    for fill in reply.fills:
        lines.append(
            f"  fill {shares(fill.quantity)} @ {dollars(fill.price, places)}  "
            f"fee {dollars(fill.fee)}  {fill.match_type}  (maker order {fill.maker_order_id})"
        )
    return "\n".join(lines), 0


# ----------------------------------------------------------------- running


async def _with_client(
    args: argparse.Namespace,
    permission: str,
    account: int | None,
    body: Callable[[ExchangeClient, ApiKey], Awaitable[T]],
) -> T:
    from ..api.grpc.client import ExchangeClient

    key = resolve_key(args, permission, account)
    target = resolve_target(args)
    async with ExchangeClient(target, key.key_id, key.secret, timeout=args.timeout) as client:
        return await body(client, key)


def _run(args: argparse.Namespace, coro_factory: Callable[[], Awaitable[int]]) -> int:
    """Run a client command; print gRPC failures and usage errors readably."""
    import grpc

    try:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    except Usage as exc:
        print(f"pyexchange: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pyexchange orders | head`
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        details = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            print(
                f"pyexchange: cannot reach the exchange at {resolve_target(args)} ({details}): "
                "is `pyexchange serve` running (with the same --data-dir)? Or pass --target.",
                file=sys.stderr,
            )
            return 2
        hint = ""
        if code == grpc.StatusCode.UNAUTHENTICATED:
            hint = f" (keys from {_keys_path(args)}: is it the running server's data dir?)"
        print(f"refused: {code.name}: {details}{hint}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------- book


def cmd_book(args: argparse.Namespace) -> int:
    from ..service.auth import READ

    async def once(client: ExchangeClient, key: ApiKey, args: argparse.Namespace) -> int:
        from ..api.grpc import exchange_pb2 as pb

        update = await client.book(args.market, args.depth)
        snap = update.snapshot
        print(
            render_book(
                update.market or args.market,
                _name(pb.MarketState, snap.state),
                snap.tick,
                update.market_seq,
                _levels(snap.bids),
                _levels(snap.asks),
                args.depth,
            )
        )
        return 0

    body = watch_book if args.watch else once
    return _run(args, lambda: _with_client(args, READ, None, lambda c, k: body(c, k, args)))


class _Book:
    """One market rebuilt from a subscription: a snapshot, then level updates in market seq."""

    def __init__(self, market: int) -> None:
        self.market = market
        self.seq = -1
        self.state = "?"
        self.tick = "0.01"
        self.bids: dict[Decimal, tuple[str, str, int]] = {}
        self.asks: dict[Decimal, tuple[str, str, int]] = {}
        self.trades: deque[str] = deque(maxlen=5)

    def apply(self, update: pb.MarketDataUpdate) -> bool:
        """Apply one update; False on a gap in market seq (resubscribe)."""
        from ..api.grpc import exchange_pb2 as pb

        kind = update.WhichOneof("update")
        if kind == "snapshot":
            snap = update.snapshot
            self.state = _name(pb.MarketState, snap.state)
            self.tick = snap.tick or self.tick
            self.bids = {_decimal(lv.price): (lv.price, lv.quantity, lv.orders) for lv in snap.bids}
            self.asks = {_decimal(lv.price): (lv.price, lv.quantity, lv.orders) for lv in snap.asks}
            self.seq = update.market_seq
            return True
        if kind is None:
            return True
        if update.market_seq != self.seq + 1:
            return False
        self.seq = update.market_seq
        if kind == "level":
            level = update.level
            side = self.bids if level.bid else self.asks
            if _decimal(level.quantity) == 0:
                side.pop(_decimal(level.price), None)
            else:
                side[_decimal(level.price)] = (level.price, level.quantity, level.orders)
        elif kind == "trade":
            trade = update.trade
            who = "taker bid" if trade.taker_bid else "taker ask"
            self.trades.appendleft(
                f"{time.strftime('%H:%M:%S')}  {shares(trade.quantity):>8} @ "
                f"{dollars(trade.price, _places(self.tick))}  {trade.match_type} ({who})"
            )
        elif kind == "status":
            self.state = _name(pb.MarketState, update.status.state)
            self.tick = update.status.tick or self.tick
        return True

    def render(self, depth: int) -> str:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        asks = [self.asks[p] for p in sorted(self.asks)]
        text = render_book(
            self.market, self.state, self.tick, self.seq, bids, asks, depth, list(self.trades)
        )
        return f"{text}\n  {time.strftime('%H:%M:%S')}  (Ctrl-C to stop)"


async def watch_book(client: ExchangeClient, key: ApiKey, args: argparse.Namespace) -> int:
    """Follow the market data subscription, redrawing at most every ``--interval`` seconds."""
    book = _Book(args.market)
    tty = sys.stdout.isatty()
    frames = 0
    dirty = asyncio.Event()
    done = asyncio.Event()

    async def draw() -> None:
        nonlocal frames
        while not done.is_set():
            await dirty.wait()
            dirty.clear()
            frame = book.render(args.depth)
            print(("\x1b[H\x1b[2J" if tty else "\n") + frame, flush=True)
            frames += 1
            if args.frames and frames >= args.frames:
                done.set()
                return
            await asyncio.sleep(args.interval)

    drawer = asyncio.create_task(draw())
    try:
        while not done.is_set():  # one subscription per pass; a gap or a drop starts another
            call = client.subscribe_market_data([args.market])
            reader = asyncio.create_task(_follow(call, book, dirty))
            finished = asyncio.create_task(done.wait())
            await asyncio.wait({reader, finished}, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if not reader.done():
                call.cancel()  # type: ignore[attr-defined]
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            else:
                reader.result()  # the stream failed: raise its error
    finally:
        done.set()
        drawer.cancel()
        await asyncio.gather(drawer, return_exceptions=True)
    return 0


async def _follow(call: Any, book: _Book, dirty: asyncio.Event) -> None:
    """Apply a subscription's updates until it ends or skips a market seq (then it returns)."""
    async for update in call:
        if update.notice == "DROPPED":
            return
        if not book.apply(update):
            return  # a gap: the caller resubscribes for a fresh snapshot
        dirty.set()


# ----------------------------------------------------------------- orders


def cmd_orders(args: argparse.Namespace) -> int:
    from ..service.auth import READ

    async def body(client: ExchangeClient, key: ApiKey) -> int:
        if args.account is not None:
            accounts = [args.account]
        elif key.accounts:
            accounts = sorted(key.accounts)
        else:
            raise Usage(f"key {key.name or key.key_id} sees every account: give --account")
        for i, account in enumerate(accounts):
            state = await client.get_account(account)
            if i:
                print()
            print(render_account(state))
        return 0

    return _run(args, lambda: _with_client(args, READ, args.account, body))


def render_account(state: pb.AccountState) -> str:
    from ..api.grpc import exchange_pb2 as pb

    lines = [
        f"account {state.account}",
        f"  cash      {dollars(state.cash)} free, {dollars(state.cash_reserved)} reserved",
    ]
    if state.positions:
        lines.append("  positions")
        lines.append(
            f"    {'market':>6}  {'YES free':>12}  {'reserved':>10}  {'NO free':>12}  "
            f"{'reserved':>10}"
        )
        for p in state.positions:
            lines.append(
                f"    {p.market:>6}  {shares(p.yes):>12}  {shares(p.yes_reserved):>10}  "
                f"{shares(p.no):>12}  {shares(p.no_reserved):>10}"
            )
    else:
        lines.append("  positions none")
    lines.append(f"  open orders: {len(state.orders)}")
    if state.orders:
        lines.append(
            f"    {'order':>8}  {'market':>6}  {'intent':<8}  {'price':>8}  {'leaves':>10}  "
            f"{'tif':<4}  {'client id':>9}  expires"
        )
        for o in state.orders:
            expires = (
                time.strftime("%H:%M:%S", time.localtime(o.expire_time_ns / 1e9))
                if o.expire_time_ns
                else ""
            )
            client_id = str(o.client_order_id) if o.client_order_id else ""
            lines.append(
                f"    {o.order_id:>8}  {o.market:>6}  {_name(pb.Intent, o.intent):<8}  "
                f"{dollars(o.price, _places(o.price)):>8}  {shares(o.leaves_quantity):>10}  "
                f"{_name(pb.TimeInForce, o.time_in_force):<4}  {client_id:>9}  {expires}"
            )
    return "\n".join(line.rstrip() for line in lines)


# ------------------------------------------------------------------ trade


def trade_request(args: argparse.Namespace, account: int) -> pb.PlaceOrderRequest:
    """The PlaceOrderRequest of ``pyexchange trade`` (``Usage`` for what cannot be sent)."""
    from ..api.grpc.client import ExchangeClient

    intent = INTENTS[args.side]
    market_order = bool(args.market_order or args.cash)
    if args.cash:
        if args.quantity:
            raise Usage("give QUANTITY or --cash, not both")
        if intent not in ("BUY_YES", "BUY_NO"):
            raise Usage("--cash (spend at most $X) is for buy-yes and buy-no market orders")
    elif not args.quantity:
        raise Usage("QUANTITY is required (or --market --cash DOLLARS for a buy)")
    if market_order and (args.post_only or args.gtd is not None):
        raise Usage("a market order is IOC (or --fok): not --post-only or --gtd")
    tif = "IOC" if args.ioc else "FOK" if args.fok else "GTD" if args.gtd is not None else None
    if args.gtd is not None and args.gtd <= 0:
        raise Usage("--gtd SECONDS must be positive")
    expire = time.time_ns() + int(args.gtd * 1e9) if args.gtd is not None else 0
    return ExchangeClient.place_request(
        account,
        args.market,
        intent,
        args.price,
        args.quantity or None,
        cash=args.cash,
        time_in_force=tif,
        expire_time_ns=expire,
        post_only=args.post_only,
        market_order=market_order,
        self_trade_prevention=STP[args.stp] if args.stp else None,
        client_order_id=args.client_id or 0,
    )


def cmd_trade(args: argparse.Namespace) -> int:
    from ..api.grpc import exchange_pb2 as pb
    from ..service.auth import TRADE

    async def body(client: ExchangeClient, key: ApiKey) -> int:
        account = _accounts_of(key, args.account, "trade for")
        request = trade_request(args, account)
        tif = _name(
            pb.TimeInForce, request.time_in_force or (pb.IOC if request.market_order else pb.GTC)
        )
        price = dollars(args.price, _places(args.price))
        where = f"on market {args.market}, account {account}"
        if request.market_order:
            size = args.quantity if args.quantity else f"for ${args.cash}"
            print(f"{args.side} {size} {where}: market order ({tif}), worst price {price}")
        else:
            post = ", post-only" if request.post_only else ""
            print(f"{args.side} {args.quantity} @ {price} {where}: limit ({tif}{post})")
        reply = await client.place_raw(request)
        text, status = render_reply(reply, _places(args.price))
        print(text)
        return status

    return _run(args, lambda: _with_client(args, TRADE, args.account, body))


# ----------------------------------------------------------------- cancel


def cmd_cancel(args: argparse.Namespace) -> int:
    from ..api.grpc import exchange_pb2 as pb
    from ..service.auth import TRADE

    chosen = sum(x is not None and x is not False for x in (args.order_id, args.client_id)) + int(
        args.all
    )
    if chosen != 1:
        print("pyexchange: give ORDER_ID, --client-id ID or --all", file=sys.stderr)
        return 2
    if args.market is not None and not args.all:
        print("pyexchange: --market goes with --all", file=sys.stderr)
        return 2

    async def body(client: ExchangeClient, key: ApiKey) -> int:
        account = _accounts_of(key, args.account, "trade for")
        if args.all:
            reply = await client.cancel_all(account, args.market)
        elif args.client_id is not None:
            reply = await client.cancel_by_client_id(account, args.client_id)
        else:
            reply = await client.cancel(account, args.order_id)
        if reply.status == pb.REJECTED:
            print(f"rejected: {reply.reject_reason}: {reply.message}")
            return 1
        if args.all:
            where = f" in market {args.market}" if args.market is not None else ""
            print(f"canceled {reply.canceled_count} order(s) of account {account}{where}")
        else:
            print(f"canceled order {reply.order_id} (account {account}, seq {reply.seq})")
        return 0

    return _run(args, lambda: _with_client(args, TRADE, args.account, body))


# ----------------------------------------------------------------- parser


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="the server's data directory: keys.json and server.json (default ./exchange-data)",
    )
    group.add_argument(
        "--target", help="HOST:PORT (default: from DATA_DIR/server.json, else 127.0.0.1:50051)"
    )
    group.add_argument("--key", help="key name (trader-1, viewer...) or key id from keys.json")
    group.add_argument("--secret", help="the key's secret (then --key is the key id)")
    group.add_argument("--keys-file", help="another keys file than DATA_DIR/keys.json")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds per call (10)")
    return common


def add_client_commands(sub: Any) -> None:
    """Register ``book``, ``orders``, ``trade`` and ``cancel`` on the main parser."""
    common = _connection_options()

    book = sub.add_parser(
        "book",
        parents=[common],
        help="print a market's L2 book (--watch: follow it live)",
        description="The L2 book of MARKET: YES prices in dollars, shares and order counts "
        "per level (asks above the spread, bids below).",
    )
    book.add_argument("market", type=int)
    book.add_argument("--depth", type=int, default=10, help="levels per side (10; 0: all)")
    book.add_argument(
        "--watch", action="store_true", help="follow the market data subscription and redraw"
    )
    book.add_argument(
        "--interval", type=float, default=0.25, help="--watch: seconds between redraws (0.25)"
    )
    book.add_argument("--frames", type=int, default=0, help="--watch: stop after N redraws")
    book.set_defaults(run=cmd_book)

    orders = sub.add_parser(
        "orders",
        parents=[common],
        help="balance, positions and open orders of an account",
        description="Free and reserved cash, YES/NO positions and resting orders (GetAccount). "
        "Without --account: every account the key may see.",
    )
    orders.add_argument("--account", type=int)
    orders.set_defaults(run=cmd_orders)

    trade = sub.add_parser(
        "trade",
        parents=[common],
        help="place an order",
        description="Place an order. PRICE is the YES price in dollars (a buy-no at 0.60 pays "
        "0.40 a share); for --market it is the worst price you accept. Default: a GTC limit.",
    )
    trade.add_argument("side", choices=list(INTENTS))
    trade.add_argument("market", type=int)
    trade.add_argument("price", help="YES price in dollars, e.g. 0.55")
    trade.add_argument("quantity", nargs="?", help="shares, e.g. 10 (omit with --cash)")
    tif = trade.add_mutually_exclusive_group()
    tif.add_argument("--ioc", action="store_true", help="immediate or cancel")
    tif.add_argument("--fok", action="store_true", help="fill or kill")
    tif.add_argument("--gtd", type=float, metavar="SECONDS", help="good for SECONDS, then expires")
    tif.add_argument("--post-only", action="store_true", help="rest only; reject if it would trade")
    trade.add_argument(
        "--market",
        dest="market_order",
        action="store_true",
        help="market order (IOC unless --fok), PRICE is the worst-price bound",
    )
    trade.add_argument("--cash", metavar="DOLLARS", help="market buy spending at most DOLLARS")
    trade.add_argument("--account", type=int, help="default: the key's account")
    trade.add_argument("--client-id", type=int, help="client order id (unique per account)")
    trade.add_argument("--stp", choices=list(STP), help="self-trade prevention")
    trade.set_defaults(run=cmd_trade)

    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel an order, by client id, or all",
        description="Cancel ORDER_ID, the order with --client-id, or --all (in --market M).",
    )
    cancel.add_argument("order_id", type=int, nargs="?")
    cancel.add_argument("--all", action="store_true", help="every resting order of the account")
    cancel.add_argument("--market", type=int, help="with --all: only this market")
    cancel.add_argument("--client-id", type=int)
    cancel.add_argument("--account", type=int, help="default: the key's account")
    cancel.set_defaults(run=cmd_cancel)
