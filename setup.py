"""Declares the one C++17 extension and generates the gRPC code; metadata is in pyproject.toml.

Build switches (environment variables):
  MATCHCORE_DEBUG=1     -O1, assertions, symbols, frame pointers
  MATCHCORE_PROFILE=1   -O3 with symbols and frame pointers (perf, py-spy)
  MATCHCORE_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer
"""

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def flags() -> tuple[list[str], list[str]]:
    compile_args = ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-function"]
    # Internal calls stay direct (no PLT): only the module init is exported.
    compile_args += ["-fvisibility=hidden", "-fno-semantic-interposition"]
    link_args: list[str] = []
    if os.environ.get("MATCHCORE_DEBUG"):
        compile_args += ["-O1", "-g", "-fno-omit-frame-pointer", "-UNDEBUG"]
    else:
        compile_args += ["-O3", "-DNDEBUG"]
    if os.environ.get("MATCHCORE_PROFILE"):
        compile_args += ["-g", "-fno-omit-frame-pointer"]
    if os.environ.get("MATCHCORE_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        compile_args += san
        link_args += san
    return compile_args, link_args


def generate_grpc_code() -> None:
    """pyexchange/api/grpc/*_pb2*.py from the .proto files (generated at build, never committed)."""
    from grpc_tools import protoc

    api = Path("pyexchange/api/grpc")
    for proto in sorted(api.glob("*.proto")):
        status = protoc.main(
            [
                "grpc_tools.protoc",
                "-I.",
                "--python_out=.",
                "--pyi_out=.",
                "--grpc_python_out=.",
                str(proto),
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {proto}")


generate_grpc_code()
compile_args, link_args = flags()
extension = Extension(
    "matchcore._engine",
    sources=["matchcore/_engine.pyx", "matchcore/src/engine.cpp", "matchcore/src/state.cpp"],
    include_dirs=["matchcore/include", numpy.get_include()],
    language="c++",
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={"language_level": "3", "embedsignature": True},
    )
)
