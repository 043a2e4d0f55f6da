"""Account endpoints: balances (``GET /v1/account/balances``, spec §2.5).

``UserBalance`` fields are JSON numbers (not Amounts), exact from the core's
micro-dollars: ``currentBalance`` is the cash the account holds (free and
reserved by open orders), ``openOrders`` what its open orders reserve,
``buyingPower`` what it may still commit (``currentBalance - openOrders``: the
core's free cash; the venue's identity ``buyingPower = currentBalance +
assetAvailable - openOrders - marginRequirement`` holds with no margin and no
credit for positions). ``availableToWithdraw`` is the free cash too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import wire
from .app import VenueApp, json_response
from .auth import account_of
from .context import VenueContext, service
from .errors import not_found
from .http import Request, Response

CASH = 1_000_000
_ZERO = Decimal(0)


def balance_object(free: int, reserved: int, updated_ns: int | None = None) -> dict[str, Any]:
    current = free + reserved
    return {
        "currentBalance": wire.number(current, CASH),
        "currency": "USD",
        "lastUpdated": wire.timestamp(updated_ns) if updated_ns else None,
        "buyingPower": wire.number(free, CASH),
        "assetNotional": _ZERO,
        "assetAvailable": _ZERO,
        "pendingCredit": _ZERO,
        "openOrders": wire.number(reserved, CASH),
        "unsettledFunds": _ZERO,
        "pendingWithdrawals": [],
        "marginRequirement": _ZERO,
        "balanceReservation": wire.number(reserved, CASH),
        "availableToWithdraw": wire.number(free, CASH),
        "displayedCash": wire.number(current, CASH),
    }


class AccountApi:
    def __init__(self, ctx: VenueContext) -> None:
        self.ctx = ctx

    def register(self, app: VenueApp) -> None:
        app.add("GET", "/v1/account/balances", self.balances, "read")
        app.add("GET", "/v1/rfqs/trades", self.rfq_trades, "read")

    async def balances(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        balance = await service(self.ctx.gateway.read(lambda engine: engine.balance(account)))
        if balance is None:
            raise not_found(f"account {account} does not exist")
        return json_response(
            wire.encode({"balances": [balance_object(int(balance.free), int(balance.reserved))]})
        )

    async def rfq_trades(self, request: Request, key: Any) -> Response:
        """No RFQ here (spec §2.7): an empty last page."""
        return json_response(wire.encode({"trades": [], "cursor": ""}))
