"""Fixtures shared by the matchcore unit tests.

Every test that takes ``engine_cls`` (or ``eng``) runs once against the C++ core
(``matchcore.Engine``, id "core") and once against the pure-Python reference
(``matchcore.reference.Engine``, id "reference"). Both are part of the installed
package, so an import failure is an error, never a skip.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import pytest

# The helpers live beside this file; with --import-mode=importlib the test modules
# can only import them if this directory is on sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import Checked, new_engine

IMPLEMENTATIONS = ("core", "reference")


def load_engine(name: str) -> Any:
    """The Engine class of an implementation."""
    module = importlib.import_module("matchcore" if name == "core" else "matchcore.reference")
    return module.Engine


@pytest.fixture(params=IMPLEMENTATIONS)
def engine_cls(request: pytest.FixtureRequest) -> Any:
    """The Engine class under test, once per implementation."""
    return load_engine(request.param)


@pytest.fixture
def both_engine_cls() -> tuple[Any, Any]:
    """(core, reference) Engine classes, for tests comparing the two."""
    return load_engine("core"), load_engine("reference")


@pytest.fixture
def eng(engine_cls: Any) -> Checked:
    """Accounts 1, 2, 3; markets 1 and 2 OPEN at tick 100 (lot 1, min size 1).

    64 order slots, 4 markets, 8 accounts; ``validate()`` runs after every command.
    """
    return new_engine(engine_cls)


@pytest.fixture
def make_engine(engine_cls: Any) -> Any:
    """A factory: ``make_engine(markets=..., accounts=..., tick=..., max_orders=...)``."""

    def make(**kwargs: Any) -> Checked:
        return new_engine(engine_cls, **kwargs)

    return make
