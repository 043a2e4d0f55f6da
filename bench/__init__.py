"""Benchmark harness: workloads, peers, runners and reports (run with ``python -m bench``)."""

import os

# numpy's OpenBLAS threads spin on the second core after numpy starts (seen in
# perf as blas_thread_server); the benchmarks use no BLAS, so keep one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
