"""Benchmarks that report ratios measured in one run: ``python -m lorakit.bench NAME``.

Results go to ``data/runs/bench/``. Speed and memory goals live here, never in timed tests.
"""
