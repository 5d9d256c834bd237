"""Benchmarks and studies, run as modules from the repository root: `python -m benchmark.reproduce --study table2`."""
