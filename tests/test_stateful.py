"""Hypothesis stateful test: short adversarial sequences through the per-call API.

Both engines receive the same calls, with the ledger on (fees, funded and
short accounts, ledger commands); after every step their return values,
their events and their canonical states must be identical, and validate()
(conservation included) must hold. Hypothesis shrinks any failure to a
minimal sequence of calls.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import matchcore as mc
from matchcore import reference

MARKETS = (0, 1)
ACCOUNTS = (0, 1, 2)
ticks = st.sampled_from([1, 10, 100, 1000])
accounts = st.sampled_from((*ACCOUNTS, 7))  # 7 is never added
markets = st.sampled_from((*MARKETS, 3))  # 3 is never created
intents = st.sampled_from(list(mc.Intent))
prices = st.one_of(
    st.integers(40, 60).map(lambda x: x * 100),  # near the touch of a $0.50 market
    st.sampled_from([0, 1, 9_999, 10_000, -100, 5_050]),
)
quantities = st.one_of(st.integers(1, 6).map(lambda x: x * 100), st.sampled_from([0, -100, 150]))


class TwoEngines(RuleBasedStateMachine):
    """The core and the reference side by side, as a state machine."""

    @initialize(
        taker=st.sampled_from([0, 1, 100, 1000]),
        maker=st.sampled_from([0, -1, 50]),
        base=st.sampled_from(list(mc.FeeBase)),
        cash=st.lists(st.sampled_from([0, 1, 499_999, 10**8]), min_size=3, max_size=3),
    )
    def start(self, taker, maker, base, cash) -> None:
        capacities = {
            "max_orders": 12,
            "max_markets": 4,
            "max_accounts": 8,
            "max_levels": 4 * 19998,
            "max_positions": 5,
        }
        self.engines = (mc.Engine(**capacities), reference.Engine(**capacities))
        self.time = 0
        for market in MARKETS:
            fees = {"taker_fee_bps": taker, "maker_fee_bps": max(maker, -taker), "fee_base": base}
            self.both("create_market", market, 100, 100, 100, **fees)
            self.both("set_market_state", market, mc.MarketState.OPEN)
        for account, amount in zip(ACCOUNTS, cash, strict=True):
            self.both("add_account", account)
            if amount:
                self.both("deposit", account, amount)
                self.both("split", account, MARKETS[0], 500)

    def both(self, method: str, *args: object, **kwargs: object) -> int:
        """Call one method on both engines; results and events must agree."""
        core, ref = (getattr(engine, method)(*args, **kwargs) for engine in self.engines)
        assert core == ref, f"{method}{args}{kwargs}: core returned {core}, reference {ref}"
        core_events, ref_events = (engine.last_events() for engine in self.engines)
        assert np.array_equal(core_events, ref_events), (
            f"{method}{args}{kwargs}:\n core {mc.event_dicts(core_events)}\n"
            f" ref  {mc.event_dicts(ref_events)}"
        )
        return core

    def order_ids(self) -> list[int]:
        return list(range(1, self.engines[0].next_order_id + 1))

    @rule(
        account=accounts,
        market=markets,
        intent=intents,
        price=prices,
        quantity=quantities,
        tif=st.sampled_from(list(mc.TimeInForce)),
        stp=st.sampled_from(list(mc.Stp)),
        post_only=st.booleans(),
        expiry=st.integers(-1, 8),
        client_order_id=st.integers(0, 3),
    )
    def submit(
        self, account, market, intent, price, quantity, tif, stp, post_only, expiry, client_order_id
    ) -> None:
        self.both(
            "submit",
            account,
            market,
            intent,
            price,
            quantity,
            tif,
            stp=stp,
            post_only=post_only,
            expiry=self.time + expiry if tif == mc.TimeInForce.GTD else 0,
            client_order_id=client_order_id,
            time=self.time,
        )

    @rule(
        account=accounts,
        market=markets,
        intent=intents,
        price=prices,
        budget=st.integers(1, 2_000_000),
        fok=st.booleans(),
        by_cash=st.booleans(),
    )
    def market_order(self, account, market, intent, price, budget, fok, by_cash) -> None:
        tif = mc.TimeInForce.FOK if fok else mc.TimeInForce.IOC
        quantity = budget if by_cash else (budget % 7 + 1) * 100
        self.both(
            "submit",
            account,
            market,
            intent,
            price,
            quantity,
            tif,
            market_order=True,
            by_cash=by_cash,
            time=self.time,
        )

    @rule(data=st.data(), account=accounts)
    def cancel(self, data, account) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids()))
        self.both("cancel", account, order_id, time=self.time)

    @rule(account=accounts, client_order_id=st.integers(0, 3))
    def cancel_client(self, account, client_order_id) -> None:
        self.both("cancel_client", account, client_order_id, time=self.time)

    @rule(account=accounts, market=st.sampled_from((*MARKETS, mc.ALL_MARKETS, 3)))
    def cancel_all(self, account, market) -> None:
        self.both("cancel_all", account, market, time=self.time)

    @rule(
        data=st.data(),
        account=accounts,
        price=st.one_of(st.just(0), prices),
        quantity=st.one_of(st.just(0), quantities),
    )
    def replace(self, data, account, price, quantity) -> None:
        order_id = data.draw(st.sampled_from(self.order_ids()))
        self.both("replace", account, order_id, price, quantity, time=self.time)

    @rule(step=st.integers(-3, 6))
    def advance_time(self, step) -> None:
        self.time = max(0, self.time + step)  # a step back is run at the current time
        self.both("advance_time", self.time)

    @rule(market=markets, state=st.sampled_from(list(mc.MarketState)))
    def set_market_state(self, market, state) -> None:
        self.both("set_market_state", market, state, time=self.time)

    @rule(market=markets, tick=st.sampled_from([1, 10, 100, 1000, 50]))
    def set_tick(self, market, tick) -> None:
        self.both("set_tick", market, tick, time=self.time)

    @rule(account=accounts, amount=st.sampled_from([1, 10_000, 10**6, 10**9, -5, 0]))
    def deposit(self, account, amount) -> None:
        self.both("deposit", account, amount, time=self.time)

    @rule(account=accounts, amount=st.sampled_from([1, 10_000, 10**6, 10**9, 0]))
    def withdraw(self, account, amount) -> None:
        self.both("withdraw", account, amount, time=self.time)

    @rule(
        account=accounts,
        market=markets,
        quantity=st.sampled_from([100, 300, 50, 0, 10**6]),
        split=st.booleans(),
    )
    def split_or_merge(self, account, market, quantity, split) -> None:
        self.both("split" if split else "merge", account, market, quantity, time=self.time)

    @rule(market=markets, outcome=st.sampled_from(list(mc.Outcome)))
    def resolve(self, market, outcome) -> None:
        self.both("resolve", market, outcome, time=self.time)

    @invariant()
    def same_state_and_valid(self) -> None:
        core, ref = self.engines
        core.validate()
        ref.validate()
        assert core.canonical_state() == ref.canonical_state()


TwoEngines.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_engines = TwoEngines.TestCase
