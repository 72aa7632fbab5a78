"""One Python implementation of one benchmark model, in a process of its own.

    python benchmarks/step_worker.py KIND SPEC DIR

KIND is numpy (the generated NumPy module), by-hand, pytorch or jax. DIR holds
params.npz and inputs.npz. Like the C harness, it reads a number of steps
per line on stdin and answers with the seconds they took and the last loss.
A process per implementation keeps thread pools (OpenBLAS, PyTorch's,
XLA's) from competing with each other between blocks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import references  # noqa: E402

LR = 1e-6  # as in the C harness: small enough that no model's parameters overflow over millions of steps (slide's loss is unbounded)


def generated_numpy(spec: Path, params, inputs):
    import symgraph as sg

    module = sg.compile(sg.load(spec), target="numpy", dtype="float32")._backend
    p = {k: np.array(v, np.float32) for k, v in params.items()}
    last = [0.0]

    def step():
        last[0], grads = module.loss_and_grads(p, inputs, training=True)
        module.sgd_step(p, grads, LR)

    return step, lambda: last[0]


def main() -> None:
    kind, spec, folder = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    with np.load(folder / "params.npz") as data:
        params = dict(data)
    with np.load(folder / "inputs.npz") as data:
        inputs = dict(data)
    model = spec.stem
    make = {
        "numpy": lambda: generated_numpy(spec, params, inputs),
        "by-hand": lambda: references.make_numpy(model, params, inputs, LR),
        "pytorch": lambda: references.make_torch(model, params, inputs, LR),
        "jax": lambda: references.make_jax(model, params, inputs, LR),
    }[kind]
    step, loss = make()
    for line in sys.stdin:
        steps = int(line)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        value = loss()  # forces pending work (JAX) before the clock stops
        print(f"{time.perf_counter() - started:.9f} {value:.9g}", flush=True)


if __name__ == "__main__":
    main()
