"""What README.md says a first demo start creates is what it creates.

The demo setup commands (``pyexchange.app.server.demo_commands``) run through a
bare engine: every demo account ends with the cash and shares the README
states, and the README states them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import matchcore as mc
from pyexchange.app.server import ServerConfig, demo_commands
from pyexchange.units import CASH_SCALE, QUANTITY_SCALE

README = Path(__file__).resolve().parents[1] / "README.md"


def test_demo_accounts_start_as_the_readme_says() -> None:
    config = ServerConfig()
    commands = demo_commands(config)
    commands["seq"] = np.arange(1, len(commands) + 1)
    commands["time"] = 1
    engine = mc.Engine(max_orders=1 << 10, max_markets=16, max_accounts=16)
    events = engine.process(commands)
    assert not (events["type"] == mc.EventType.REJECTED).any()
    for account in config.demo_accounts:
        assert engine.balance(account) == (97_000 * CASH_SCALE, 0)
        for m in config.demo_markets:
            assert engine.position(account, m.market) == (
                1_000 * QUANTITY_SCALE,
                0,
                1_000 * QUANTITY_SCALE,
                0,
            )
    text = " ".join(README.read_text().split())
    assert "starts with **$97,000** of cash and 1,000 YES and 1,000 NO shares" in text
