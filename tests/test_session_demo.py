"""``matchcore`` (the seeded session of the README) really trades, with the ledger on."""

from __future__ import annotations

import re
import sys

import pytest

from matchcore.__main__ import main


def test_the_session_trades_every_match_type_and_checks_invariants(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["matchcore", "--commands", "30000", "--accounts", "50"])
    main()
    out = capsys.readouterr().out
    assert "invariants ok" in out
    assert "INSUFFICIENT_BALANCE" not in out  # every account is funded
    traded = dict(re.findall(r"(COMPLEMENTARY|MINT|MERGE) ([\d,]+)", out))
    assert set(traded) == {"COMPLEMENTARY", "MINT", "MERGE"}
    assert all(int(v.replace(",", "")) > 0 for v in traded.values())
    fees = re.search(r"fees collected \$([\d,.]+)", out)
    assert fees and float(fees.group(1).replace(",", "")) > 0
