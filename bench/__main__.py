"""Run the benchmarks: ``python -m bench [--quick] [--only model preprocess ...]``.

Discovers ``bench/bench_*.py``, calls each module's ``run(repeats)``, prints one table, and writes
``bench/results/<YYYY-MM-DD>.json`` (rows per module, merged with earlier runs of the same day) and
``BENCHMARKS.md`` (machine, versions, command, and each module's newest rows, from whichever day's file holds them).
Ratio column: for times ("s") and memory ("MB") it is reference / ours, for throughput ("clips/s") ours / reference;
either way > 1 means this project is better.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LOWER_IS_BETTER = {"s", "MB"}


def discover() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))


def ratio(row: dict) -> float | None:
    ours, ref = row.get("ours"), row.get("reference")
    if ours is None or ref is None or ours <= 0 or ref <= 0:
        return None
    return ref / ours if row["unit"] in LOWER_IS_BETTER else ours / ref


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "torchaudio": _version("torchaudio"),
        "torchvision": _version("torchvision"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.3g} {unit}"


def table(rows_by_module: dict[str, list[dict]]) -> list[str]:
    lines = ["| module | case | ours | reference | ratio (>1 = ours better) | notes |",
             "|---|---|---|---|---|---|"]
    for module, rows in rows_by_module.items():
        for row in rows:
            r = ratio(row)
            kind = "ours/ref" if row["unit"] not in LOWER_IS_BETTER else "ref/ours"
            lines.append(f"| {module} | {row['case']} | {_fmt(row['ours'], row['unit'])} | "
                         f"{_fmt(row.get('reference'), row['unit'])} | "
                         f"{'-' if r is None else f'{r:.2f}x ({kind})'} | {row.get('notes', '')} |")
    return lines


def write_markdown(path: Path, info: dict, command: str, date: str, rows_by_module: dict[str, list[dict]],
                   runs: dict[str, str] | None = None) -> None:
    """``runs``: module -> "`command` at HH:MM" of the run that produced its rows (runs of one day are merged)."""
    runs = runs or {}
    provenance = "; ".join(f"{name}: {runs[name]}" for name in rows_by_module if name in runs)
    text = [
        "# Benchmarks",
        "",
        f"Generated on {date}, last by `{command}`. Reference = transformers {info.get('transformers')}, run in the "
        "same invocation on",
        "the same inputs. Figures are medians after warm-up. Ratio: reference/ours for times and memory,",
        "ours/reference for throughput (clips/s); above 1 means this project is faster or smaller.",
        "",
        *([f"Rows by module come from: {provenance}.", ""] if provenance else []),
        "Machine (at the last run): " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        *table(rows_by_module),
        "",
    ]
    # modules may add a section of their own (figures, analysis) through a ``markdown() -> str`` function
    for name in rows_by_module:
        section = getattr(importlib.import_module(f"bench.bench_{name}"), "markdown", None)
        if section is not None and (body := section()):
            text += [body, ""]
    path.write_text("\n".join(text))


def latest_rows() -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Each module's rows from the newest results file that has them (``bench/results/<date>.json``), and where
    they come from (command, time and date), so that a run of some modules keeps the others' rows in BENCHMARKS.md."""
    rows: dict[str, list[dict]] = {}
    runs: dict[str, str] = {}
    for path in sorted(RESULTS_DIR.glob("????-??-??.json")):  # oldest first: newer files override
        stored = json.loads(path.read_text())
        for name, module_rows in stored.get("modules", {}).items():
            rows[name] = module_rows
            runs[name] = f"{stored.get('runs', {}).get(name, '`' + stored.get('command', '?') + '`')} on {path.stem}"
    return rows, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed repetition per case")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per case (default 5)")
    parser.add_argument("--only", nargs="*", default=None, help="module names (e.g. model preprocess)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results files")
    args = parser.parse_args(argv)
    available = discover()
    modules = args.only or available
    unknown = sorted(set(modules) - set(available))
    if unknown:
        parser.error(f"unknown benchmark module(s) {unknown}; available: {available}")
    repeats = 1 if args.quick else args.repeats
    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    rows_by_module: dict[str, list[dict]] = {}
    failures = []
    for name in modules:
        print(f"== bench_{name} (repeats={repeats})", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.bench_{name}")
            rows_by_module[name] = module.run(repeats=repeats)
        except Exception:  # one failing module must not hide the others' figures; reported and exit 1
            traceback.print_exc()
            failures.append(name)
            continue
        print(f"   done in {time.perf_counter() - start:.0f} s", flush=True)
    print()
    print("\n".join(table(rows_by_module)))
    if not args.no_write and rows_by_module:
        date = dt.date.today().isoformat()
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{date}.json"
        stored = json.loads(path.read_text()) if path.is_file() else {}
        merged = {**stored.get("modules", {}), **rows_by_module}
        stamp = f"`{command}` at {dt.datetime.now().strftime('%H:%M')}"
        runs = {**stored.get("runs", {}), **{name: stamp for name in rows_by_module}}
        info = machine_info()
        path.write_text(json.dumps({"date": date, "command": command, "machine": info, "quick": args.quick,
                                    "modules": merged, "runs": runs}, indent=2) + "\n")
        latest, latest_runs = latest_rows()
        write_markdown(ROOT / "BENCHMARKS.md", info, command, date, latest, latest_runs)
        print(f"\nwrote {path.relative_to(ROOT)} and BENCHMARKS.md")
    if failures:
        print(f"failed modules: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
