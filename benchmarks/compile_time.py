"""Cold and cached ``sg.compile(..., target="c")`` of every example, side by side.

    python benchmarks/compile_time.py [--repeat 5]

A cold compile renders the sources and runs the C compiler into an empty
cache; a cached one renders the same sources and finds the library by its
hash. Prints the median of each and their ratio, per example.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import symgraph as sg

ROOT = Path(__file__).resolve().parents[1]


def timed(g) -> float:
    started = time.perf_counter()
    sg.compile(g, target="c")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'example':<12}  {'cold (s)':>9}  {'cached (s)':>10}  {'cold/cached':>11}")
    for spec in sorted((ROOT / "examples").glob("*.yaml")):
        g = sg.load(spec)
        cold, cached = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["SYMGRAPH_CACHE"] = cache
                cold.append(timed(g))
                cached.append(timed(g))
        c, w = statistics.median(cold), statistics.median(cached)
        print(f"{g.name:<12}  {c:>9.3f}  {w:>10.3f}  {c / w:>11.1f}")


if __name__ == "__main__":
    main()
