"""pyproject.toml as setuptools reads it: no deprecation warning, only the declared files ship.

``pip install .`` used to print setuptools' deprecation of a ``project.license``
table and two "absent from the packages configuration" notices (the C++
sources' and headers' directories look like packages to setuptools when every
file of the tree is package data). The build backend's own configuration reader
runs here with warnings as errors.

The gRPC stubs are generated at build time, and they refuse on import a grpcio
older than the grpcio-tools that wrote them (and the protobuf messages a
protobuf older than protoc's): the runtime lower bounds must cover the build's
pins, or an environment that already holds the lower bound fails at start.
"""

from __future__ import annotations

import re
import tomllib
import warnings
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_setuptools_reads_the_configuration_without_a_warning() -> None:
    # the build requires setuptools>=77 (pyproject's build-system); the test venv may be older
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), PYPROJECT)
    assert dist.include_package_data is False  # only package-data ships: no directory scan
    assert "matchcore" in dist.package_data and "pyexchange.api.grpc" in dist.package_data


def _lower_bound(requirements: list[str], name: str) -> tuple[int, ...]:
    (spec,) = [r for r in requirements if re.match(rf"{re.escape(name)}\s*[=>]", r)]
    return tuple(int(x) for x in re.search(r"(?:==|>=)\s*([\d.]+)", spec).group(1).split("."))


def test_the_runtime_bounds_cover_the_generated_stubs() -> None:
    from pyexchange.api.grpc import exchange_pb2, exchange_pb2_grpc

    config = tomllib.loads(PYPROJECT.read_text())
    tools = _lower_bound(config["build-system"]["requires"], "grpcio-tools")
    assert "grpcio-tools==" in "".join(config["build-system"]["requires"])  # exact, see there
    runtime = config["project"]["dependencies"]
    generated = tuple(int(x) for x in exchange_pb2_grpc.GRPC_GENERATED_VERSION.split("."))
    assert generated <= _lower_bound(runtime, "grpcio") == tools
    # the messages' gencode check: ValidateProtobufRuntimeVersion(PUBLIC, major, minor, patch, ...)
    source = Path(exchange_pb2.__file__).read_text()
    gencode = r"ValidateProtobufRuntimeVersion\(\s*[\w.]+,\s*(\d+),\s*(\d+),\s*(\d+)"
    call = re.search(gencode, source)
    assert call is not None
    assert tuple(int(x) for x in call.groups()) <= _lower_bound(runtime, "protobuf")
