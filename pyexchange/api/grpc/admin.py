"""The Admin gRPC service: a thin adapter over ``pyexchange.service.admin``.

Admin calls need a key with the ``admin`` permission (separate credentials:
the demo admin key cannot trade, trader keys cannot administer). Every call is
one command through the engine, journaled before it runs; an engine reject is
a reply (``ok = false``, ``reject_reason``, ``message``), a request that cannot
be converted is ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from matchcore import MarketState

from ...service import admin as sa
from ...service.auth import ADMIN
from ...service.errors import Invalid
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc
from .auth import GrpcAuth

STATE_NAMES = ("PRE_OPEN", "OPEN", "SUSPENDED", "CLOSED", "RESOLVED", "HALTED", "EXPIRED")
STATES = {pb.MarketState.Value(name): int(MarketState[name]) for name in STATE_NAMES}
OUTCOMES = {pb.YES: 1, pb.NO: 2, pb.HALF: 3}
FEE_BASES = {pb.NOTIONAL: 0, pb.MIN: 1, pb.PQ: 2, pb.PQ_CENTS: 3}


def create_market_of(r: pb.CreateMarketRequest) -> sa.CreateMarket:
    if r.fee_base not in FEE_BASES:
        raise Invalid(f"unknown fee_base value {r.fee_base}")
    return sa.CreateMarket(
        market=r.market,
        tick=r.tick,
        min_size=r.min_size,
        lot=r.lot,
        taker_fee_bps=r.taker_fee_bps,
        maker_fee_bps=r.maker_fee_bps,
        fee_base=FEE_BASES[r.fee_base],
        min_price=r.min_price,
        max_price=r.max_price,
    )


def set_state_of(r: pb.SetMarketStateRequest) -> sa.SetMarketState:
    if r.state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATE_NAMES)}, not {r.state}")
    return sa.SetMarketState(market=r.market, state=STATES[r.state])


def resolve_of(r: pb.ResolveRequest) -> sa.Resolve:
    if r.outcome not in OUTCOMES:
        raise Invalid(f"outcome must be YES, NO or HALF, not {r.outcome}")
    return sa.Resolve(market=r.market, outcome=OUTCOMES[r.outcome])


def transfer_of(r: pb.TransferRequest) -> sa.Transfer:
    return sa.Transfer(
        account=r.account,
        amount=r.amount,
        source=r.source,
        destination=r.destination,
        transfer_id=r.transfer_id,
    )


def reply_pb(r: sa.AdminReply) -> pb.AdminReply:
    return pb.AdminReply(ok=r.ok, seq=r.seq, reject_reason=r.reject_reason, message=r.message)


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, admin: sa.Admin, auth: GrpcAuth) -> None:
        self.admin = admin
        self.auth = auth

    async def _call(
        self, request: Any, context: grpc.aio.ServicerContext, convert: Callable[[Any], Any]
    ) -> pb.AdminReply:
        key = await self.auth.authenticate(context, request, ADMIN)
        return reply_pb(await self.admin.call(key, convert(request)))

    async def CreateMarket(
        self, request: pb.CreateMarketRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, create_market_of)

    async def SetMarketState(
        self, request: pb.SetMarketStateRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, set_state_of)

    async def SetTick(
        self, request: pb.SetTickRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(
            request, context, lambda r: sa.SetTick(market=r.market, tick=r.tick)
        )

    async def Resolve(
        self, request: pb.ResolveRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, resolve_of)

    async def AddAccount(
        self, request: pb.AccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(request, context, lambda r: sa.AddAccount(account=r.account))

    async def Deposit(
        self, request: pb.CashRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(
            request, context, lambda r: sa.Deposit(account=r.account, amount=r.amount)
        )

    async def Withdraw(
        self, request: pb.CashRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        return await self._call(
            request, context, lambda r: sa.Withdraw(account=r.account, amount=r.amount)
        )

    async def Transfer(
        self, request: pb.TransferRequest, context: grpc.aio.ServicerContext
    ) -> pb.AdminReply:
        key = await self.auth.authenticate(context, request, ADMIN)
        return reply_pb(await self.admin.transfer(key, transfer_of(request)))
