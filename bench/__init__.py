"""Benchmark harness: workloads, peers, runners and reports (run with ``python -m bench``)."""
