"""The Admin service: markets (create, state, tick, resolve) and accounts (add, deposit, withdraw).

Admin calls need a key with the ``admin`` permission (separate credentials:
the demo admin key cannot trade, trader keys cannot administer). Like order
entry, every call is one command through the sequencer, journaled before it
runs; an engine reject is a reply (``ok = false``, ``reject_reason``,
``message``), a request that cannot be converted is ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from matchcore import COMMAND_DTYPE, CommandType, EventType
from matchcore.codes import FEE_BPS_LIMIT

from ...service.auth import ADMIN
from ...units import UnitError, parse_tick
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc
from .order_entry import CommandGateway, _cash, _quantity, invalid, reject_text

STATES = {pb.PRE_OPEN: 1, pb.OPEN: 2, pb.HALTED: 3, pb.CLOSED: 4, pb.RESOLVED: 5}
OUTCOMES = {pb.YES: 1, pb.NO: 2, pb.HALF: 3}
FEE_BASES = {pb.NOTIONAL: 0, pb.MIN: 1, pb.PQ: 2}


def _command(kind: CommandType, **fields: int) -> np.ndarray:
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = kind
    for name, value in fields.items():
        command[name] = value
    return command


def _units(convert: Any, text: str) -> int:
    try:
        return int(convert(text))
    except UnitError as exc:
        raise invalid(str(exc)) from None


def create_market_command(request: pb.CreateMarketRequest) -> np.ndarray:
    tick = _units(parse_tick, request.tick or "0.01")
    lot = _units(lambda t: _quantity(t, 1), request.lot or "0.01")
    min_size = _units(lambda t: _quantity(t, 1), request.min_size) if request.min_size else lot
    for name, value in (("taker", request.taker_fee_bps), ("maker", request.maker_fee_bps)):
        if abs(value) > FEE_BPS_LIMIT:
            raise invalid(f"{name}_fee_bps {value} is outside ±{FEE_BPS_LIMIT}")
    if request.fee_base not in FEE_BASES:
        raise invalid(f"unknown fee_base value {request.fee_base}")
    return _command(
        CommandType.CREATE_MARKET,
        market=request.market,
        price=tick,
        quantity=min_size,
        aux=lot,
        taker_fee_bps=request.taker_fee_bps,
        maker_fee_bps=request.maker_fee_bps,
        fee_base=FEE_BASES[request.fee_base],
    )


def set_state_command(request: pb.SetMarketStateRequest) -> np.ndarray:
    if request.state not in STATES:
        raise invalid(
            f"state must be PRE_OPEN, OPEN, HALTED, CLOSED or RESOLVED, not {request.state}"
        )
    return _command(CommandType.SET_MARKET_STATE, market=request.market, arg=STATES[request.state])


def set_tick_command(request: pb.SetTickRequest) -> np.ndarray:
    return _command(
        CommandType.SET_TICK, market=request.market, price=_units(parse_tick, request.tick)
    )


def resolve_command(request: pb.ResolveRequest) -> np.ndarray:
    if request.outcome not in OUTCOMES:
        raise invalid(f"outcome must be YES, NO or HALF, not {request.outcome}")
    return _command(CommandType.RESOLVE, market=request.market, arg=OUTCOMES[request.outcome])


def add_account_command(request: pb.AccountRequest) -> np.ndarray:
    return _command(CommandType.ADD_ACCOUNT, account=request.account)


def cash_command(kind: CommandType, request: pb.CashRequest) -> np.ndarray:
    return _command(kind, account=request.account, quantity=_units(_cash, request.amount))


def admin_reply(events: np.ndarray) -> pb.AdminReply:
    reply = pb.AdminReply(ok=True)
    if len(events):
        reply.seq = int(events[0]["seq"])
    rejected = events[events["type"] == EventType.REJECTED]
    if len(rejected):
        reply.ok = False
        reply.reject_reason, reply.message = reject_text(int(rejected[0]["reason"]))
    return reply


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, gateway: CommandGateway) -> None:
        self.gateway = gateway
        self.auth = gateway.auth

    async def _call(
        self, request: Any, context: grpc.aio.ServicerContext, build: Any, label: str
    ) -> pb.AdminReply:
        await self.auth.authenticate(context, request, ADMIN)
        events = await self.gateway.run(build(request), label)
        return admin_reply(events)

    async def CreateMarket(
        self, request: pb.CreateMarketRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, create_market_command, "admin")

    async def SetMarketState(
        self, request: pb.SetMarketStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, set_state_command, "admin")

    async def SetTick(
        self, request: pb.SetTickRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, set_tick_command, "admin")

    async def Resolve(
        self, request: pb.ResolveRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, resolve_command, "admin")

    async def AddAccount(
        self, request: pb.AccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, add_account_command, "admin")

    async def Deposit(
        self, request: pb.CashRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(
            request, context, lambda r: cash_command(CommandType.DEPOSIT, r), "admin"
        )

    async def Withdraw(
        self, request: pb.CashRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(
            request, context, lambda r: cash_command(CommandType.WITHDRAW, r), "admin"
        )
