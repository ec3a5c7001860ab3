"""Benchmarks of scale-scheduler (issue 8): ``python -m bench`` writes ``bench/RESULTS.md``.

Not installed with the package: run it from the repository root. See ``bench/README.md``.
"""
