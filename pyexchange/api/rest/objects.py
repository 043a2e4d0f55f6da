"""The venue's Order, Execution and UserPosition objects, built from the order history (spec §2.3).

Shared by the REST responses and the private WebSocket's frames, so both show
the same thing. Quantities are contracts (JSON numbers in ``Order``, decimal
strings in ``lastShares`` and positions), prices are YES prices with the
market's tick decimals, money is an Amount with exact decimals.

How the core's executions are shown (spec §3.8, the choices of §6):

- a market order that could fill nothing is REJECTED with NO_LIQUIDITY (the core
  rejects it: docs/matchcore.md §4, the venue's market orders);
- the unfilled rest of an IOC, FOK or market order is CANCELED (an FOK that
  cannot fill at once is rejected by the core: REJECTED, "Fill or kill ...");
- a self-match cancel is CANCELED with the text "Self Match Prevention";
- an expired GTD order is EXPIRED; a cancel the owner did not ask for (a market
  closing, a tick change) carries ``unsolicitedCancelReason``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from matchcore import CancelReason, OrderFlags

from ...feeds.history import Execution, Kind, OrderRecord, PositionRecord, Status
from ...service.catalogue import Catalogue
from . import ids, venue, wire

QTY, CASH, PRICE = venue.QUANTITY_SCALE, venue.CASH_SCALE, 10_000
MARKET = int(OrderFlags.MARKET)
BY_CASH = int(OrderFlags.BY_CASH)

_STATES = {
    Status.NEW: "ORDER_STATE_NEW",
    Status.PARTIALLY_FILLED: "ORDER_STATE_PARTIALLY_FILLED",
    Status.FILLED: "ORDER_STATE_FILLED",
    Status.CANCELED: "ORDER_STATE_CANCELED",
    Status.REJECTED: "ORDER_STATE_REJECTED",
    Status.EXPIRED: "ORDER_STATE_EXPIRED",
}
_KINDS = {
    Kind.NEW: "EXECUTION_TYPE_NEW",
    Kind.PARTIAL_FILL: "EXECUTION_TYPE_PARTIAL_FILL",
    Kind.FILL: "EXECUTION_TYPE_FILL",
    Kind.CANCELED: "EXECUTION_TYPE_CANCELED",
    Kind.REPLACED: "EXECUTION_TYPE_REPLACE",
    Kind.REJECTED: "EXECUTION_TYPE_REJECTED",
    Kind.EXPIRED: "EXECUTION_TYPE_EXPIRED",
}


class MarketFacts:
    """What the objects need of a market: slug, names, tick and fee rates (from the
    catalogue and the engine's market info)."""

    __slots__ = ("entry", "maker_bps", "taker_bps", "tick")

    def __init__(self, entry: Any, tick: int, taker_bps: int, maker_bps: int) -> None:
        self.entry = entry
        self.tick = tick
        self.taker_bps = taker_bps
        self.maker_bps = maker_bps


def facts(catalogue: Catalogue, info: Any, market: int) -> MarketFacts:
    entry = catalogue.market(market)
    if info is None:
        return MarketFacts(entry, 100, 0, 0)
    return MarketFacts(entry, int(info.tick), int(info.taker_fee_bps), int(info.maker_fee_bps))


def price_amount(units: int, tick: int) -> dict[str, str]:
    return wire.amount(wire.fixed(units, PRICE, venue.price_decimals(tick)))


def cash_amount(micro: int) -> dict[str, str]:
    """Dollars, exact, at least the cents (``"0.07"``, ``"-0.0125"``)."""
    return wire.amount(wire.exact(micro, CASH, 2))


def order_id_of(order: OrderRecord) -> str:
    return ids.order_id(order.order_id) if order.order_id else ids.rejected_order_id(order.seq)


def order_object(order: OrderRecord, market: MarketFacts, slug: str = "") -> dict[str, Any]:
    entry = market.entry
    slug = slug or entry.slug
    intent = order.intent
    by_cash = bool(order.flags & BY_CASH)
    out: dict[str, Any] = {
        "id": order_id_of(order),
        "marketSlug": slug,
        "side": venue.BOOK_SIDE.get(intent, "ORDER_SIDE_BUY"),
        "type": "ORDER_TYPE_MARKET" if order.flags & MARKET else "ORDER_TYPE_LIMIT",
        "price": price_amount(order.price, market.tick),
        "quantity": wire.number(order.cum if by_cash else order.quantity, QTY),
        "cumQuantity": wire.number(order.cum, QTY),
        "leavesQuantity": wire.number(order.leaves if order.open else 0, QTY),
        "tif": venue.TIF_NAMES.get(order.tif, "TIME_IN_FORCE_GOOD_TILL_CANCEL"),
        "intent": venue.INTENT_NAMES.get(intent, "ORDER_INTENT_BUY_LONG"),
        "outcomeSide": venue.OUTCOME_SIDE.get(intent, "OUTCOME_SIDE_YES"),
        "action": venue.ACTION.get(intent, "ORDER_ACTION_BUY"),
        "marketMetadata": {
            "slug": slug,
            "title": entry.title or slug,
            "outcome": entry.outcome,
            "eventSlug": entry.event_slug,
        },
        "state": _STATES[order.status],
        "insertTime": wire.timestamp(order.inserted_ns),
        "createTime": wire.timestamp(order.created_ns),
        "commissionNotionalTotalCollected": cash_amount(order.fees),
        "commissionsBasisPoints": str(market.taker_bps),
        "makerCommissionsBasisPoints": str(market.maker_bps),
    }
    if order.cum:
        out["avgPx"] = wire.amount(average_price(order.notional, order.cum, market.tick))
    if by_cash:
        out["cashOrderQty"] = cash_amount(order.budget)
    if order.expiry_ns:
        out["goodTillTime"] = wire.timestamp(order.expiry_ns)
    if order.status == Status.REJECTED and not order.price:
        del out["price"]  # the core does not say what it rejected: only that it did
    return out


def average_price(notional: int, cum: int, tick: int) -> str:
    """The average fill price (YES terms): notional / quantity, to 2 decimals more than
    the tick's, half-even (an average need not be on the tick)."""
    decimals = venue.price_decimals(tick) + 2
    value = Decimal(notional) / Decimal(cum) / PRICE
    return str(value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN))


def execution_object(
    execution: Execution, market: MarketFacts, slug: str = "", unsolicited: bool = False
) -> dict[str, Any]:
    """An Execution; ``unsolicited``: a cancel the exchange made (maintenance)."""
    order = execution.order
    kind = execution.kind
    out: dict[str, Any] = {
        "id": ids.execution_id(
            execution.seq,
            execution.index,
            "N" if kind not in (Kind.FILL, Kind.PARTIAL_FILL) else "T" if execution.taker else "M",
        ),
        "order": order_object(order, market, slug),
        "type": _KINDS[kind],
        "transactTime": wire.timestamp(execution.time_ns),
    }
    if kind in (Kind.FILL, Kind.PARTIAL_FILL):
        out["lastShares"] = wire.exact(execution.last_qty, QTY)
        out["lastPx"] = price_amount(execution.last_price, market.tick)
        out["tradeId"] = ids.trade_id(execution.seq, execution.index)
        out["aggressor"] = execution.taker
        out["commissionNotionalCollected"] = cash_amount(execution.fee)
    elif kind == Kind.REJECTED:
        reason, text = venue.reject(execution.reason)
        out["orderRejectReason"] = reason
        out["text"] = text
    elif kind == Kind.CANCELED:
        if execution.reason == CancelReason.SELF_TRADE:
            out["text"] = venue.SELF_MATCH_TEXT
        elif execution.reason == CancelReason.UNFILLED:
            out["text"] = "Unfilled quantity canceled (immediate or cancel)"
        elif execution.reason in venue.UNSOLICITED:
            out["unsolicitedCancelReason"] = venue.UNSOLICITED[execution.reason]
            out["text"] = "Canceled by the exchange"
        elif unsolicited:
            out["unsolicitedCancelReason"] = "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION"
            out["text"] = "Canceled for maintenance"
    return out


# --------------------------------------------------------------- positions


def position_object(
    yes: int,
    no: int,
    yes_free: int,
    no_free: int,
    record: PositionRecord | None,
    market: MarketFacts,
    mark: int | None,
    expired: bool,
) -> dict[str, Any]:
    """``UserPosition`` (spec §2.4): net YES-terms position and the trading record."""
    net = yes - no
    available = yes_free if net > 0 else no_free if net < 0 else 0
    bought = record.bought if record is not None else 0
    sold = record.sold if record is not None else 0
    cost = (record.yes_cost + record.no_cost) if record is not None else 0
    held = yes + no
    entry = market.entry
    out: dict[str, Any] = {
        "netPosition": str(_rounded(net)),
        "netPositionDecimal": wire.fixed(net, QTY, 4),
        "qtyBought": str(_rounded(bought)),
        "qtyBoughtDecimal": wire.fixed(bought, QTY, 4),
        "qtySold": str(_rounded(sold)),
        "qtySoldDecimal": wire.fixed(sold, QTY, 4),
        "qtyAvailable": str(_rounded(available)),
        "qtyAvailableDecimal": wire.fixed(available, QTY, 4),
        "bodPosition": "0",
        "bodPositionDecimal": "0.0000",
        "cost": cash_amount(cost) if held else None,
        "realized": cash_amount(record.realized if record is not None else 0),
        "fees": cash_amount(record.fees if record is not None else 0),
        "cashValue": (cash_amount(yes * mark + no * (PRICE - mark)) if mark is not None else None),
        "avgPx": wire.amount(average_price(cost, held, market.tick)) if held and cost else None,
        "expired": expired,
        "updateTime": wire.timestamp(record.updated_ns) if record and record.updated_ns else None,
        "marketMetadata": {
            "slug": entry.slug,
            "title": entry.title or entry.slug,
            "outcome": entry.outcome,
            "eventSlug": entry.event_slug,
        },
        "comboLegDetails": [],
        "positionId": "",
    }
    return out


def _rounded(units: int) -> int:
    """The deprecated integer fields: contracts rounded half-even."""
    return int((Decimal(units) / QTY).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
