"""What runs on each workload: which peers, at which sizes, and the figures derived from them.

A suite returns a plain dict (the JSON report): one *table* per (workload, size,
capacity: ``--capacity``, the ``max_orders`` of the engines),
each with its rows and, per row, the ratio of its median time per command to this
project's batch and per-call figures measured in the same table. A peer too slow
for the full size (the pure-Python reference) runs in a second table at a reduced
size, next to this project's engines at that same size, so its ratios compare like
with like.
"""

from __future__ import annotations

import importlib
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from . import latency, memory, openloop, scale, workloads
from .peers import Peer, Unavailable
from .peers.engine import BatchPeer, CallsPeer
from .peers.liquibook_peer import LiquibookPeer
from .peers.orderbook_peer import OrderBookPeer
from .peers.plain import PlainPeer
from .runner import Measurement, measure_in_turn

CORE = "matchcore"
REFERENCE = "reference"
BATCH, CALLS = f"{CORE} batch", f"{CORE} per-call"


@dataclass
class Config:
    quick: bool = False
    runs: int = 5
    warmup: int = 1
    size: int | None = None  # measured commands (default: full, or the quick size)
    reference_size: int | None = None
    chunk: int = 8192  # commands per process() call; 0: one call
    progress: bool = True
    latency: bool = True  # per-command-type latency histograms
    latency_runs: int | None = None  # timed runs merged into them (default: full 3, quick 1)
    open_loop: bool = True
    open_loop_seconds: float | None = None  # per offered rate (default: full 1 s, quick 0.05 s)
    open_loop_batch: int = 64
    open_loop_drain: int = 1_000
    rates: tuple[int, ...] = openloop.RATES
    # max_orders of every table: "workload" (sized to it), "default" (the server's), or a number
    capacities: tuple[str, ...] = ("workload",)

    FULL: ClassVar[dict[str, int]] = {
        "XC": workloads.XC_FULL,
        "PEER": workloads.PEER_FULL,
        "SCALE": scale.SCALE_FULL,
    }
    QUICK: ClassVar[dict[str, int]] = {"XC": 50_000, "PEER": 50_000, "SCALE": 50_000}
    REFERENCE_FULL: ClassVar[int] = 100_000
    REFERENCE_QUICK: ClassVar[int] = 5_000

    def n(self, workload: str) -> int:
        if self.size is not None:
            return self.size
        return (self.QUICK if self.quick else self.FULL)[workload]

    def n_reference(self, workload: str) -> int:
        size = self.reference_size
        if size is None:
            size = self.REFERENCE_QUICK if self.quick else self.REFERENCE_FULL
        return min(size, self.n(workload))

    def n_latency_runs(self) -> int:
        if self.latency_runs is not None:
            return self.latency_runs
        return 1 if self.quick else 3

    def driver(self) -> openloop.Driver:
        seconds = self.open_loop_seconds
        if seconds is None:
            seconds = 0.05 if self.quick else 1.0
        return openloop.Driver(
            batch=self.open_loop_batch,
            seconds=seconds,
            drain_every=self.open_loop_drain,
            rates=tuple(self.rates),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "runs": self.runs,
            "warmup": self.warmup,
            "chunk": self.chunk,
            "sizes": {w: self.n(w) for w in self.FULL},
            "reference_sizes": {w: self.n_reference(w) for w in self.FULL},
            "latency": self.latency,
            "latency_runs": self.n_latency_runs(),
            "open_loop": self.open_loop,
            "open_loop_driver": self.driver().as_dict(),
            "capacities": list(self.capacities),
            "server_default_max_orders": server_default_capacity(),
        }

    def fitting(self, workload: Any, notes: list[str]) -> list[str]:
        """The ``capacities`` that hold ``workload``'s largest book; a note for each other."""
        out = []
        for spec in self.capacities:
            orders = capacity_of(spec, workload)
            if orders >= workload.expected.max_live:
                out.append(spec)
            else:
                notes.append(
                    f"{workload.name} at {capacity_label(spec, orders)} left out: its largest "
                    f"book is {workload.expected.max_live:,} orders"
                )
        return out


CAPACITY_LABELS = {"workload": "workload-sized", "default": "the server's default"}


def server_default_capacity() -> int:
    """``max_orders`` of a new data directory of ``pyexchange serve`` (``ServerConfig``)."""
    from pyexchange.app.server import ServerConfig

    return int(ServerConfig.max_orders)


def capacity_label(spec: str, orders: int) -> str:
    label = CAPACITY_LABELS.get(spec)
    return f"max_orders {orders:,}" + (f" ({label})" if label else "")


def at_capacity(spec: str, workload: Any) -> tuple[Any, str]:
    """``workload`` for an engine of the ``--capacity`` item ``spec``, and its label."""
    orders = capacity_of(spec, workload)
    return workload.at_capacity(orders), capacity_label(spec, orders)


def capacity_of(spec: str, workload: Any) -> int:
    """``max_orders`` for a ``--capacity`` item: "workload", "default" or a number."""
    if spec == "workload":
        return int(workload.max_orders)
    if spec == "default":
        return server_default_capacity()
    return int(spec)


# ------------------------------------------------------------------ progress


@contextmanager
def _bar(enabled: bool, total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A tqdm bar (on stderr) if enabled and installed, else a no-op; yields ``update(n)``."""
    if not enabled:
        yield lambda _n: None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda _n: None
        return
    with tqdm(total=total, desc=desc, unit="cmd" if total > 1000 else "run", leave=False) as bar:
        yield bar.update


# ------------------------------------------------------------------ peers


def reference_engine() -> tuple[type | None, str | None]:
    """The pure-Python reference Engine class, or why it cannot be used."""
    try:
        return importlib.import_module("matchcore.reference").Engine, None
    except (ImportError, AttributeError) as exc:
        return None, f"matchcore.reference is not importable: {exc!r}"


def _core_engine() -> type:
    from matchcore import Engine

    return Engine


def _core_peers(cfg: Config, one_call: bool = False) -> list[Peer]:
    """This project's batch and per-call peers; ``one_call`` adds a single process() call
    and the chunks through process_into() (the main tables)."""
    engine = _core_engine()
    peers: list[Peer] = [BatchPeer(engine, CORE, cfg.chunk), CallsPeer(engine, CORE)]
    if one_call and cfg.chunk:
        peers.insert(1, BatchPeer(engine, CORE, 0, suffix=", one call"))
        peers.insert(1, _into(cfg))
    return peers


def _into(cfg: Config, suffix: str = "", ledger: bool | None = None) -> Peer:
    """The batch row again through process_into(), the events into one reused array."""
    engine = _core_engine()
    return BatchPeer(
        engine, CORE, cfg.chunk, suffix=f"{suffix}, process_into", ledger=ledger, into=True
    )


def _reference_peers(cfg: Config) -> tuple[list[Peer], str | None]:
    engine, why = reference_engine()
    if engine is None:
        return [], why
    return [BatchPeer(engine, REFERENCE, cfg.chunk), CallsPeer(engine, REFERENCE)], None


# ------------------------------------------------------------------ tables


def run_tables(
    title: str,
    workload: Any,
    specs: list[str],
    make_peers: Callable[[], list[Peer]],
    cfg: Config,
    note: str = "",
) -> list[dict[str, Any]]:
    """Measure every peer on ``workload`` at each capacity of ``specs``: one table each.

    Each peer's runs at the capacities are taken in turn (``measure_in_turn``), so the
    ratios between capacities come from the same minutes; the ratios to this project's
    figures are within each table (one capacity).
    """
    ats = [at_capacity(spec, workload) for spec in specs]
    peer_lists = [make_peers() for _ in specs]  # one peer object per capacity
    rows: list[list[Measurement]] = [[] for _ in specs]
    unavailable: list[list[dict[str, Any]]] = [[] for _ in specs]
    total = len(peer_lists[0]) * len(specs) * (cfg.runs + cfg.warmup) if specs else 0
    with _bar(cfg.progress, total, title) as update:
        for k in range(len(peer_lists[0]) if specs else 0):
            pairs = [(peers[k], at) for peers, (at, _) in zip(peer_lists, ats, strict=True)]
            try:
                got = measure_in_turn(pairs, cfg.runs, cfg.warmup, lambda: update(1))
            except Unavailable as exc:
                for u in unavailable:
                    u.append({"peer": pairs[0][0].name, "reason": str(exc)})
                continue
            except Exception as exc:  # a peer that breaks is reported, and fails the run
                for u in unavailable:
                    u.append(
                        {"peer": pairs[0][0].name, "reason": f"failed: {exc!r}", "error": True}
                    )
                continue
            for r, m in zip(rows, got, strict=True):
                r.append(m)
    return [
        _table(f"{title}, {label}", at, spec, title, r, u, note)
        for (at, label), spec, r, u in zip(ats, specs, rows, unavailable, strict=True)
    ]


def _table(
    title: str,
    workload: Any,
    spec: str,
    part: str,
    rows: list[Measurement],
    unavailable: list[dict[str, Any]],
    note: str,
) -> dict[str, Any]:
    """One table: its rows with their ratios to this project's figures in it, the checks."""
    by_name = {m.peer: m for m in rows}
    out_rows = []
    for m in rows:
        row = m.as_dict()
        row["max_orders"] = workload.max_orders
        for key, base in (("ratio_to_batch", BATCH), ("ratio_to_per_call", CALLS)):
            row[key] = round(m.median_ns / by_name[base].median_ns, 3) if base in by_name else None
        out_rows.append(row)
    # State digests agree within each ledger mode (the ledger's state is in the digest).
    digests = {
        m.peer: (m.outcome.extra.get("ledger"), m.outcome.extra["digest"])
        for m in rows
        if "digest" in m.outcome.extra
    }
    table = {
        "title": title,
        "part": part,  # the tables of one part differ only in capacity
        "max_orders": workload.max_orders,
        "capacity": spec,
        "workload": workload.name,
        "commands": workload.n,
        "seed": workload.seed,
        "params": workload.params,
        "mix": workload.mix(),
        "expected": workload.expected.as_dict(),
        "note": note,
        "rows": out_rows,
        "unavailable": unavailable,
        "all_checks_ok": all(m.check.ok for m in rows)
        and not any(u.get("error") for u in unavailable),
    }
    if digests:
        modes = {mode for mode, _ in digests.values()}
        table["state_digests_agree"] = len(set(digests.values())) == len(modes)
    core = by_name.get(BATCH)
    if core is not None and core.memory is not None:
        table["memory"] = memory_figures(core.memory)
    return table


def memory_figures(memory: dict[str, Any]) -> dict[str, Any]:
    """Bytes per resting order (slot + indexes, over capacity) and per market, from memory()."""
    b, cap = memory["bytes"], memory["capacities"]
    per_order = sum(b[k] for k in ("orders", "slot_map", "client_index", "expiry_heap"))
    return {
        "capacities": cap,
        "engine_memory_bytes": b,
        "order_slot_bytes": b["order_slot"],
        "bytes_per_resting_order": round(per_order / cap["max_orders"], 2),
        "bytes_per_market": round((b["levels"] + b["markets"]) / cap["max_markets"], 2),
        "bytes_per_account": round(b["accounts"] / cap["max_accounts"], 2),
    }


def _generate(cfg: Config, desc: str, make: Callable[..., Any], n: int, **kw: Any) -> Any:
    with _bar(cfg.progress and n >= 200_000, n, desc) as update:
        return make(n=n, progress=update, **kw)


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    _capacity_ratios(result.get("tables", []))
    parts = list(result.get("tables", []))
    for at in (result, *result.get("other_capacities", [])):
        parts += [at[k] for k in ("latency", "open_loop") if isinstance(at.get(k), dict)]
    result["all_checks_ok"] = all(p.get("all_checks_ok", True) for p in parts)
    return result


def _capacity_ratios(tables: list[dict[str, Any]]) -> None:
    """Each row's median over the same peer's in the same table at the first capacity.

    Tables of one run at several capacities share a ``part`` (the title without the
    capacity); the first capacity's table of a part is the base of its ratios.
    """
    first: dict[str, dict[str, float]] = {}
    for table in tables:
        base = first.setdefault(
            table["part"], {r["peer"]: r["median_ns_per_command"] for r in table["rows"]}
        )
        table["first_max_orders"] = next(
            t["max_orders"] for t in tables if t["part"] == table["part"]
        )
        for row in table["rows"]:
            b = base.get(row["peer"])
            row["ratio_to_first_capacity"] = (
                round(row["median_ns_per_command"] / b, 3) if b else None
            )


ONE_CALL = "one call per command"


def _batched(cfg: Config) -> str:
    return f"at most {cfg.open_loop_batch} commands per process() call"


def _latency_and_open_loop(
    cfg: Config,
    workload: Any,
    spec: str,
    result: dict[str, Any],
    timed: list[tuple[Peer, str]],
    driven: list[tuple[Peer, str]],
) -> None:
    """Per-command-type latency (``timed``) and the open-loop table (``driven``) of
    ``workload`` at the capacity ``spec``.

    The first capacity's tables are ``result["latency"]`` and ``result["open_loop"]``
    (the pictures draw those); another capacity's go to ``result["other_capacities"]``.
    """
    engine = _core_engine()
    if not (cfg.latency or cfg.open_loop):
        return
    wl, capacity = at_capacity(spec, workload)
    part: dict[str, Any] = {}
    if cfg.latency:
        kinds = latency.command_kinds(wl, engine)
        runs, warm = cfg.n_latency_runs(), max(cfg.warmup, 1)
        with _bar(cfg.progress, len(timed) * (runs + warm), f"{wl.name} latency") as update:
            part["latency"] = latency.latency_table(wl, timed, kinds, runs, warm, update)
    if cfg.open_loop and driven:
        driver = cfg.driver()
        total = len(driven) * len(driver.rates)
        with _bar(cfg.progress, total, f"{wl.name} open loop") as update:
            part["open_loop"] = openloop.open_loop_table(wl, driven, driver, engine, update)
    for table in part.values():
        table["max_orders"] = wl.max_orders
        if "title" in table:
            table["title"] += f", {capacity}"
    if not any(k in result for k in ("latency", "open_loop")):
        result.update(part)
    else:
        others = result.setdefault("other_capacities", [])
        others.append({"max_orders": wl.max_orders, "capacity": capacity, **part})


# ------------------------------------------------------------------ suites


XC_LEDGER_NOTE = (
    "'ledger on': the same commands with pre-trade risk checks, reservations and "
    "settlement on every command (every account funded with cash and YES+NO pairs, so "
    "no check fails); the other rows match only (ledger=False), as the peers do"
)
REDUCED_NOTE = (
    "reduced size: the pure-Python reference is slow; same seed (a prefix "
    "of the full stream), ratios against this project at the same size"
)


def run_xc(cfg: Config) -> dict[str, Any]:
    """XC: this project's batch and per-call APIs; the reference at a reduced size.

    Every table, the latency and the open loop at each of ``cfg.capacities``.
    """
    n = cfg.n("XC")
    wl = _generate(cfg, "generating XC", workloads.xc, n)
    ref_peers, why = _reference_peers(cfg)
    n_ref = cfg.n_reference("XC")
    small = wl if n_ref == n or not ref_peers else workloads.xc(n=n_ref)
    notes: list[str] = [why] if why else []
    specs = cfg.fitting(wl, notes)
    engine = _core_engine()

    def main_peers() -> list[Peer]:
        risk_on = BatchPeer(engine, CORE, cfg.chunk, suffix=", ledger on", ledger=True)
        peers = [*_core_peers(cfg, one_call=True), risk_on]
        if cfg.chunk:
            peers.append(_into(cfg, ", ledger on", ledger=True))
        return peers

    tables = run_tables(f"XC, {n:,} commands", wl, specs, main_peers, cfg, note=XC_LEDGER_NOTE)
    if ref_peers:
        tables += run_tables(
            f"XC, {n_ref:,} commands (reduced size for the reference)",
            small,
            specs,
            lambda: _core_peers(cfg) + _reference_peers(cfg)[0],
            cfg,
            note=REDUCED_NOTE,
        )
    result = {"workload": "XC", "tables": tables, "notes": notes}
    for spec in specs:
        _latency_and_open_loop(
            cfg,
            wl,
            spec,
            result,
            timed=[
                (BatchPeer(engine, CORE, cfg.chunk or 8192), "in-core"),
                (CallsPeer(engine, CORE), "python"),
            ],
            driven=[
                (BatchPeer(engine, CORE), _batched(cfg)),
                (CallsPeer(engine, CORE), ONE_CALL),
            ],
        )
    return _finish(result)


def _peer_peers(cfg: Config, with_orderbook: bool = False) -> list[Peer]:
    peers: list[Peer] = [
        *_core_peers(cfg, one_call=True),
        PlainPeer(),
        LiquibookPeer(True),
        LiquibookPeer(False),
    ]
    if with_orderbook:
        peers.append(OrderBookPeer())
    return peers


def run_peer(cfg: Config) -> dict[str, Any]:
    """PEER (and its add/cancel part PEER-AC) against every peer that installs here.

    Every table, the latency and the open loop at each of ``cfg.capacities`` (the
    peers other than this project's have no capacity: their rows are run again).
    """
    n = cfg.n("PEER")
    wl = _generate(cfg, "generating PEER", workloads.peer, n)
    ref_peers, why = _reference_peers(cfg)
    n_ref = cfg.n_reference("PEER")
    small = wl if n_ref == n or not ref_peers else workloads.peer(n=n_ref)
    ac = _generate(cfg, "generating PEER-AC", workloads.peer, n, crosses=False)
    notes: list[str] = [why] if why else []
    specs = cfg.fitting(wl, notes)
    tables = run_tables(f"PEER, {n:,} operations", wl, specs, lambda: _peer_peers(cfg), cfg)
    if ref_peers:
        tables += run_tables(
            f"PEER, {n_ref:,} operations (reduced size for the reference)",
            small,
            specs,
            lambda: [*_core_peers(cfg), PlainPeer(), *_reference_peers(cfg)[0]],
            cfg,
            note=REDUCED_NOTE,
        )
    tables += run_tables(
        f"PEER-AC (add/cancel part), {n:,} operations",
        ac,
        cfg.fitting(ac, notes),
        lambda: _peer_peers(cfg, with_orderbook=True),
        cfg,
        note="adds and cancels only, for order-book (a price -> size store without matching)",
    )
    result = {"workload": "PEER", "tables": tables, "notes": notes}
    engine = _core_engine()
    for spec in specs:
        _latency_and_open_loop(
            cfg,
            wl,
            spec,
            result,
            timed=[
                (BatchPeer(engine, CORE, cfg.chunk or 8192), "in-core"),
                (CallsPeer(engine, CORE), "python"),
                (PlainPeer(), "python"),
                (LiquibookPeer(True), "python"),
            ],
            driven=[
                (BatchPeer(engine, CORE), _batched(cfg)),
                (CallsPeer(engine, CORE), ONE_CALL),
                (PlainPeer(), ONE_CALL),
                (LiquibookPeer(True), ONE_CALL),
            ],
        )
    return _finish(result)


def run_scale(cfg: Config) -> dict[str, Any]:
    """SCALE: many markets, funded accounts, the ledger on; and the same book without it.

    At each of ``cfg.capacities`` that holds its largest book (the server's default,
    262,144, does not hold the full SCALE's million resting orders).
    """
    n = cfg.n("SCALE")
    shape = scale.QUICK if cfg.quick else scale.FULL
    wl = _generate(cfg, "generating SCALE", scale.scale, n, **shape)
    engine = _core_engine()
    title = (
        f"SCALE, {n:,} commands, {wl.markets:,} markets, {wl.accounts:,} funded accounts, "
        f"{shape['resting']:,} resting orders at the start"
    )
    note = (
        "ledger on (reservations, settlement and fees on every command; every account funded "
        "so no risk check fails); 'ledger off' is the same book and commands on an engine "
        "built with ledger=False (no DEPOSIT/SPLIT in its setup). Traded volume by match type "
        "(generator's model): " + ", ".join(f"{k} {v:,}" for k, v in wl.match_volume.items())
    )
    notes: list[str] = []
    specs = cfg.fitting(wl, notes)

    def peers() -> list[Peer]:
        return [
            BatchPeer(engine, CORE, cfg.chunk),
            *([_into(cfg)] if cfg.chunk else []),
            CallsPeer(engine, CORE),
            BatchPeer(engine, CORE, cfg.chunk, suffix=", ledger off", ledger=False),
        ]

    tables = run_tables(title, wl, specs, peers, cfg, note=note)
    for table in tables:
        table["match_volume"] = wl.match_volume
    result = {"workload": "SCALE", "tables": tables, "notes": notes}
    for spec in specs:
        _latency_and_open_loop(
            cfg,
            wl,
            spec,
            result,
            timed=[
                (BatchPeer(engine, CORE, cfg.chunk or 8192), "in-core"),
                (CallsPeer(engine, CORE), "python"),
            ],
            driven=[],  # no open loop on SCALE (yet): XC and PEER have it
        )
    return _finish(result)


def run_memory(cfg: Config) -> dict[str, Any]:
    """Bytes per resting order, per empty market, per account; each probe in its own process."""
    with _bar(cfg.progress, 4, "memory probes") as update:
        mem = memory.measure(quick=cfg.quick, progress=update)
    result = {"workload": "MEMORY", "memory": mem, "notes": []}
    result["peak_rss_bytes"] = max(mem["summary"]["peak_rss_bytes"].values())
    result["all_checks_ok"] = True
    return result


SUITES: dict[str, Callable[[Config], dict[str, Any]]] = {
    "xc": run_xc,
    "peer": run_peer,
    "scale": run_scale,
    "memory": run_memory,
}
DEFAULT = ["xc", "peer", "scale", "memory"]  # what ``python -m bench`` runs
