"""One training step (loss and gradients on a full batch) of every example:
generated C against generated NumPy, measured side by side in one run.

    python benchmarks/step_time.py [--repeat 20] [--dtype float32]

Prints the median milliseconds per step of each target and NumPy/C, the
speed-up of C. Both targets are called in-process with the same inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import symgraph as sg
from symgraph.gradcheck import random_inputs
from symgraph.ir import is_batch

ROOT = Path(__file__).resolve().parents[1]


def median_ms(model, params, inputs, repeat: int) -> float:
    model.loss_and_grads(params, inputs, training=True)  # warm caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.loss_and_grads(params, inputs, training=True)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    print(f"{'example':<12}  {'batch':>5}  {'numpy ms':>9}  {'c ms':>8}  {'numpy/c':>7}")
    for spec in sorted((ROOT / "examples").glob("*.yaml")):
        g = sg.load(spec)
        numpy, c = sg.compile(g, target="numpy", dtype=args.dtype), sg.compile(g, target="c", dtype=args.dtype)
        params, inputs = numpy.init_params(0), random_inputs(numpy)
        batch = next((int(d) for leaf in numpy.program.inputs for d in leaf.shape[:1] if is_batch(d)), 1)
        # Alternate the targets so that drifts in machine load hit both alike.
        pairs = [(median_ms(numpy, params, inputs, args.repeat), median_ms(c, params, inputs, args.repeat)) for _ in range(3)]
        t_numpy, t_c = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        print(f"{g.name:<12}  {batch:>5}  {t_numpy:>9.3f}  {t_c:>8.3f}  {t_numpy / t_c:>7.2f}")


if __name__ == "__main__":
    main()
