"""Imports only go down: engine, feeds and service know no transport and no API (issue 11).

``python -c "import pyexchange.engine, pyexchange.feeds, pyexchange.service"``
(every module of the three wings, in a fresh interpreter) imports no ``grpc``
module and nothing of ``pyexchange.api`` or ``pyexchange.app``; and no module
under those wings names them in an import statement (checked on the source,
relative imports included).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pyexchange

WINGS = ("engine", "feeds", "service")
ROOT = Path(pyexchange.__file__).parent

PROBE = """
import importlib, json, pkgutil, sys
import pyexchange.engine, pyexchange.feeds, pyexchange.service
for wing in ("engine", "feeds", "service"):
    package = importlib.import_module("pyexchange." + wing)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, cwd="/"
    )
    return json.loads(out.stdout)


def _banned(module: str) -> bool:
    return module == "grpc" or module.startswith(("grpc.", "grpc_")) or _is_api(module)


def _is_api(module: str) -> bool:
    return module.startswith(("pyexchange.api", "pyexchange.app"))


def test_the_wings_import_no_grpc_and_no_api() -> None:
    loaded = _loaded()
    assert [m for m in loaded if m == "grpc" or m.startswith(("grpc.", "grpc_"))] == []


def test_no_api_module_is_loaded_by_the_wings() -> None:
    assert [m for m in _loaded() if _is_api(m)] == []


def _imports(source: str, package: str) -> list[str]:
    """Absolute names of the modules a source imports (relative ones resolved in ``package``)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])


def _offenders(wing: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / wing).rglob("*.py"))
        for name in _imports(path.read_text(), _package_of(path))
        if _banned(name)
    ]


@pytest.mark.parametrize("wing", WINGS)
def test_no_source_of_a_wing_imports_an_api(wing: str) -> None:
    assert _offenders(wing) == []


def test_the_source_check_sees_every_form_of_import() -> None:
    source = (
        "import grpc\n"
        "from ..api.grpc import exchange_pb2\n"
        "from .. import app\n"
        "from .link import EngineLink\n"
        "import pyexchange.api.rest.wire\n"
    )
    names = _imports(source, "pyexchange.service")
    assert [n for n in names if _banned(n)] == [
        "grpc",
        "pyexchange.api.grpc",
        "pyexchange.api.grpc.exchange_pb2",
        "pyexchange.app",
        "pyexchange.api.rest.wire",
    ]
    assert "pyexchange.service.link" in names
