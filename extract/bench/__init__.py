"""Benchmarks (``make bench-extract``): they time things, so they are not tests."""
