"""Benchmarks of pgqueue-sync, side by side with a peer queue and a bare-SQL ceiling.

Each module runs as ``python -m benchmarks.<name>``; ``python -m benchmarks.all`` runs them
all in paired, alternating runs and writes a JSON report to ``benchmarks/results/``.
"""
