"""Administration without a transport: markets (create, state, tick, resolve) and accounts.

Every call is one command through the engine link, journaled before it runs;
the caller's key needs the ``admin`` permission (``Forbidden`` otherwise: admin
keys are separate credentials). A value that does not convert is ``Invalid``
(nothing journaled); an engine reject is a reply (``ok = False``,
``reject_reason``, ``message``). Values are decimal strings or units, codes
``matchcore``'s (``MarketState``, ``Outcome``, ``FeeBase``).

``transfer`` moves an account's cash between two shards of a cluster (a
gateway's backend has ``transfer_cash``; the embedded exchange has one ledger
and refuses it as ``NOT_A_CLUSTER``).
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from matchcore import COMMAND_DTYPE, CommandType, EventType, FeeBase, MarketState, Outcome
from matchcore.codes import FEE_BPS_LIMIT

from ..engine.sequencer import SequencerStopped
from ..units import UnitError, check_cash, check_tick, format_cash, parse_cash, parse_tick
from .auth import ADMIN, ApiKey
from .errors import Forbidden, Invalid
from .link import EngineLink, stopped
from .messages import reject_text
from .orders import U32, U64, Value, _absent, _price, _quantity, _whole, record


class CreateMarket(msgspec.Struct, kw_only=True):
    market: int
    tick: Value = ""  # default 0.01
    min_size: Value = ""  # default: the lot
    lot: Value = ""  # default 0.01 share
    taker_fee_bps: int = 0
    maker_fee_bps: int = 0
    fee_base: int = FeeBase.NOTIONAL
    # the market's price bounds ("" or 0: none, the core's tick .. 1 - tick), e.g. the
    # venue's 0.01 .. 0.99 on a $0.005 tick
    min_price: Value = ""
    max_price: Value = ""


class SetMarketState(msgspec.Struct, kw_only=True):
    market: int
    state: int  # matchcore.MarketState


class SetTick(msgspec.Struct, kw_only=True):
    market: int
    tick: Value


class Resolve(msgspec.Struct, kw_only=True):
    market: int
    outcome: int  # matchcore.Outcome: YES, NO or HALF


class AddAccount(msgspec.Struct, kw_only=True):
    account: int


class Deposit(msgspec.Struct, kw_only=True):
    account: int
    amount: Value


class Withdraw(msgspec.Struct, kw_only=True):
    account: int
    amount: Value


class Transfer(msgspec.Struct, kw_only=True):
    """Free cash of an account moved between two shards of a cluster (docs/cluster.md)."""

    account: int
    amount: Value
    source: int  # shard
    destination: int  # shard
    transfer_id: int  # the caller's, from 1: a retry with the same id is the same transfer


AdminRequest = CreateMarket | SetMarketState | SetTick | Resolve | AddAccount | Deposit | Withdraw


class AdminReply(msgspec.Struct):
    ok: bool
    seq: int = 0
    reject_reason: str = ""
    message: str = ""


STATES = frozenset(int(s) for s in MarketState if s != MarketState.NONE)
OUTCOMES = frozenset(int(o) for o in Outcome if o != Outcome.NONE)
FEE_BASES = frozenset(int(b) for b in FeeBase)


def _tick(value: Any) -> int:
    try:
        if isinstance(value, str):
            return parse_tick(value)
        if type(value) is int:
            return check_tick(value)
        raise UnitError("tick must be a decimal string or a whole number of price units")
    except UnitError as exc:
        raise Invalid(str(exc), "INVALID_TICK") from None


def _amount(value: Any) -> int:
    try:
        if isinstance(value, str):
            return parse_cash(value)
        if type(value) is int:
            return check_cash(value)
        raise UnitError("amount must be a decimal string or a whole number of cash units")
    except UnitError as exc:
        raise Invalid(str(exc), "INVALID_AMOUNT") from None


def create_market_record(r: CreateMarket) -> tuple[int, ...]:
    market = _whole(r.market, "market", U32)
    tick = _tick(r.tick or "0.01")
    lot = _quantity(r.lot or "0.01", 1)
    min_size = _quantity(r.min_size, 1) if r.min_size else lot
    for name, value in (("taker", r.taker_fee_bps), ("maker", r.maker_fee_bps)):
        if type(value) is not int or abs(value) > FEE_BPS_LIMIT:
            raise Invalid(f"{name}_fee_bps {value} is outside ±{FEE_BPS_LIMIT}", "INVALID_FEE")
    if r.fee_base not in FEE_BASES:
        raise Invalid(f"unknown fee_base value {r.fee_base}", "INVALID_ARGUMENT")
    low = 0 if _absent(r.min_price) else _price(r.min_price, 1)
    high = 0 if _absent(r.max_price) else _price(r.max_price, 1)
    if high and low > high:
        raise Invalid("min_price is above max_price", "INVALID_PRICE")
    return record(
        CommandType.CREATE_MARKET,
        market=market,
        price=tick,
        quantity=min_size,
        aux=lot,
        expiry=low | high << 32,  # the core's packing of the bounds (docs/matchcore.md §4)
        taker_fee_bps=r.taker_fee_bps,
        maker_fee_bps=r.maker_fee_bps,
        fee_base=int(r.fee_base),
    )


def admin_record(request: AdminRequest) -> tuple[int, ...]:
    """The command record of an admin request, or ``Invalid``."""
    kind = type(request)
    if kind is CreateMarket:
        return create_market_record(request)  # type: ignore[arg-type]
    if kind is SetMarketState:
        state = request.state  # type: ignore[union-attr]
        if state not in STATES:
            raise Invalid(
                "state must be PRE_OPEN, OPEN, SUSPENDED, CLOSED, RESOLVED, HALTED or EXPIRED,"
                f" not {state}",
                "INVALID_STATE",
            )
        market = _whole(request.market, "market", U32)  # type: ignore[union-attr]
        return record(CommandType.SET_MARKET_STATE, market=market, arg=int(state))
    if kind is SetTick:
        market = _whole(request.market, "market", U32)  # type: ignore[union-attr]
        return record(CommandType.SET_TICK, market=market, price=_tick(request.tick))  # type: ignore[union-attr]
    if kind is Resolve:
        outcome = request.outcome  # type: ignore[union-attr]
        if outcome not in OUTCOMES:
            raise Invalid(f"outcome must be YES, NO or HALF, not {outcome}", "INVALID_OUTCOME")
        market = _whole(request.market, "market", U32)  # type: ignore[union-attr]
        return record(CommandType.RESOLVE, market=market, arg=int(outcome))
    if kind is AddAccount:
        account = _whole(request.account, "account", U32)  # type: ignore[union-attr]
        return record(CommandType.ADD_ACCOUNT, account=account)
    if kind is Deposit or kind is Withdraw:
        account = _whole(request.account, "account", U32)  # type: ignore[union-attr]
        amount = _amount(request.amount)  # type: ignore[union-attr]
        command = CommandType.DEPOSIT if kind is Deposit else CommandType.WITHDRAW
        return record(command, account=account, quantity=amount)
    raise Invalid(f"not an admin request: {kind.__name__}", "INVALID_ARGUMENT")


def admin_reply(events: np.ndarray) -> AdminReply:
    reply = AdminReply(ok=True)
    if len(events):
        reply.seq = int(events[0]["seq"])
    rejected = events[events["type"] == EventType.REJECTED]
    if len(rejected):
        reply.ok = False
        reply.reject_reason, reply.message = reject_text(int(rejected[0]["reason"]))
    return reply


class Admin:
    """Admin calls for any API: the key needs ``admin``; one command each."""

    def __init__(self, link: EngineLink) -> None:
        self.link = link

    async def call(self, key: ApiKey, request: AdminRequest) -> AdminReply:
        if not key.may(ADMIN):
            raise Forbidden(f"key {key.key_id} lacks the 'admin' permission", "MISSING_PERMISSION")
        commands = np.array([admin_record(request)], dtype=COMMAND_DTYPE)
        return admin_reply(await self.link.run(commands, "admin"))

    async def transfer(self, key: ApiKey, request: Transfer) -> AdminReply:
        """Move cash between shards: ok once the destination took it (a cluster's backend only)."""
        if not key.may(ADMIN):
            raise Forbidden(f"key {key.key_id} lacks the 'admin' permission", "MISSING_PERMISSION")
        account = _whole(request.account, "account", U32)
        amount = _amount(request.amount)
        source = _whole(request.source, "source", U32)
        destination = _whole(request.destination, "destination", U32)
        transfer_id = _whole(request.transfer_id, "transfer_id", U64)
        if transfer_id == 0:
            raise Invalid("transfer_id must be from 1 (the caller's id of the transfer)")
        move = getattr(self.link.backend, "transfer_cash", None)
        if move is None:  # the embedded exchange: one engine, all cash in one ledger
            raise Invalid(
                "this exchange runs one engine: cash moves between the shards of a cluster only",
                "NOT_A_CLUSTER",
            )
        try:
            result = await move(account, amount, source, destination, transfer_id)
        except ValueError as exc:
            raise Invalid(str(exc), "INVALID_SHARD") from None
        except SequencerStopped as exc:
            raise stopped(exc) from None
        reply = admin_reply(result.events)
        shown = f"${format_cash(amount)} of account {account} from shard {source} to {destination}"
        if reply.ok and result.credited is None:  # no withdrawal and no reject: another transfer's
            reply.ok, reply.reject_reason = False, "DUPLICATE_TRANSFER_ID"
            reply.message = f"transfer id {transfer_id} of account {account} names another transfer"
        elif result.credited is False:
            reply.ok, reply.reject_reason = False, "REFUSED_BY_DESTINATION"
            reply.message = f"shard {destination} could not take {shown}: refunded at the source"
        elif reply.ok:
            reply.message = f"moved {shown}"
        return reply
