"""pyproject.toml as setuptools reads it: no deprecation warning, only the declared files ship.

``pip install .`` used to print setuptools' deprecation of a ``project.license``
table and two "absent from the packages configuration" notices (the C++
sources' and headers' directories look like packages to setuptools when every
file of the tree is package data). The build backend's own configuration reader
runs here with warnings as errors.
"""

from __future__ import annotations

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
