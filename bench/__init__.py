"""Benchmarks: each measures the project next to a baseline and reports ratios (``make bench``)."""
