"""Benchmarks, run with ``python -m bench [--quick] [--only NAME]`` (``make bench``).

The harness is in :mod:`bench.common`; each ``bench/*_bench.py`` module registers its
benchmarks with ``@benchmark("name")`` and is listed in ``bench/__main__.py``.
"""
