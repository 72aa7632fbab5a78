"""The generated C matrix product against OpenBLAS (through NumPy), float32,
square sizes 256, 512 and 1024, on one thread and on all cores.

    python benchmarks/matmul.py [--blocks 7] [--json matmul.json]

For each thread count a fresh process sets OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS (and OMP_PROC_BIND=true) before NumPy loads, builds the
generated model of ``c = a @ b`` (-O3 -march=native, and -fopenmp for more
than one thread), then times it and ``np.matmul(a, b, out=c)`` in
interleaved blocks. It prints the median GFLOP/s of each and the generated
kernel's share of OpenBLAS's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZES = (256, 512, 1024)
# OpenBLAS's threads spin for about 0.1 s after a product, and OpenMP's for a
# while too: without a pause, each block would share the cores with the other's.
IDLE = 0.3
SPEC = """
name: square
dims: {{batch: {n}, k: {n}}}
inputs: {{a: {{shape: [batch, k]}}}}
params: {{b: {{shape: [k, k], init: normal(0.1)}}}}
graph:
  c: a @ b
  loss: sum(c)
loss: loss
outputs: [c]
"""


def worker(threads: int, blocks: int) -> list[dict]:
    import numpy as np

    import symgraph as sg
    from symgraph import native
    from symgraph.codegen import build_program, render
    from symgraph.codegen.c import LIBRARY

    rows = []
    for n in SIZES:
        g = sg.load(SPEC.format(n=n))
        program = build_program(g, "float32")
        files = render(program, "c")
        flags = native.FLAGS + (("-fopenmp",) if threads > 1 else ())
        library = native.Library(program, native.build({k: files[k] for k in LIBRARY}, flags))
        rng = np.random.default_rng(0)
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), np.float32)
        reps = max(1, int(2e9 / (2 * n**3)))  # about a second per block at 1 GFLOP/s, less when faster
        ours, blas = [], []
        ours_c = library.forward({"b": b}, {"a": a})["c"]
        np.testing.assert_allclose(ours_c, a @ b, rtol=1e-3, atol=1e-2)
        for _ in range(blocks):
            time.sleep(IDLE)
            started = time.perf_counter()
            for _ in range(reps):
                library.forward({"b": b}, {"a": a})
            ours.append((time.perf_counter() - started) / reps)
            time.sleep(IDLE)
            started = time.perf_counter()
            for _ in range(reps):
                np.matmul(a, b, out=out)
            blas.append((time.perf_counter() - started) / reps)
        flops = 2 * n**3
        rows.append({
            "n": n, "threads": threads,
            "generated_gflops": flops / statistics.median(ours) / 1e9,
            "openblas_gflops": flops / statistics.median(blas) / 1e9,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--json", default="matmul.json")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # thread count, in the child
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.blocks)))
        return
    rows = []
    print(f"{'n':>5} {'threads':>7} {'generated GFLOP/s':>18} {'OpenBLAS GFLOP/s':>17} {'share':>6}")
    for threads in sorted({1, os.cpu_count() or 1}):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        if threads > 1:  # one core per OpenMP thread, as in train_step.py
            env["OMP_PROC_BIND"] = "true"
        done = subprocess.run([sys.executable, __file__, "--worker", str(threads), "--blocks", str(args.blocks)],
                              env=env, capture_output=True, text=True, check=True)
        for row in json.loads(done.stdout):
            rows.append(row)
            share = row["generated_gflops"] / row["openblas_gflops"]
            print(f"{row['n']:>5} {threads:>7} {row['generated_gflops']:>18.1f} {row['openblas_gflops']:>17.1f} {share:>6.0%}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
