"""Benchmarks: this project against the references (transformers 4.40.2), measured in the same run.

Each ``bench/bench_<topic>.py`` defines ``run(repeats: int = 5) -> list[dict]`` returning rows
``{"case", "ours", "reference", "unit" ("s" | "clips/s" | "MB"), "notes"}`` (medians after warm-up).
``python -m bench`` (``make bench``) runs them all, prints a table and writes ``bench/results/<date>.json`` and
``BENCHMARKS.md``.
"""

from __future__ import annotations

from pathlib import Path


def proc_kb(field: str, path: str = "/proc/self/status") -> int:
    """A kB figure from a Linux /proc file (``VmRSS``, ``VmHWM``, ``VmSize`` of this process, or ``MemAvailable``
    from /proc/meminfo). Raises KeyError when the file has no such field."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{path} has no {field}")
