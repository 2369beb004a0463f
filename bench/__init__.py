"""Benchmarks: this project against the references (transformers 4.40.2), measured in the same run.

Each ``bench/bench_<topic>.py`` defines ``run(repeats: int = 5) -> list[dict]`` returning rows
``{"case", "ours", "reference", "unit" ("s" | "clips/s" | "MB"), "notes"}`` (medians after warm-up).
``python -m bench`` (``make bench``) runs them all, prints a table and writes ``bench/results/<date>.json`` and
``BENCHMARKS.md``.
"""
