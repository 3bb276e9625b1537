"""Peer programs that benchmarks/ingest.py runs in subprocesses beside the worker."""
