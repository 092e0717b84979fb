"""Benchmarks: speed and quality measured from the outside, written to BENCHMARKS.md."""
