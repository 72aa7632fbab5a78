"""The NumPy target's scratch memory for one training step of each example,
float32, at the spec's batch size, side by side in one run:

    python benchmarks/numpy_memory.py [--examples mlp,nlm]

  arrays     the intermediates of loss_and_grads written into scratch buffers
             (those of at least SCRATCH_ELEMENTS elements that no caller gets);
  one each   their bytes with one buffer per array;
  planned    their bytes in the numbered buffers of the memory plan, which
             arrays share wherever their lifetimes (the schedule's, the same
             as the C target's arena) do not overlap;
  held       what the model's scratch holds after one step, helper buffers
             (conv window rows and patches, temporaries) included.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import symgraph as sg
from symgraph.codegen import numpy as numpy_backend
from symgraph.codegen.schedule import schedule
from symgraph.ir import numel

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["mlp", "nlm", "textcnn", "transformer", "digits_cnn"]


def inputs_for(model, g, rng) -> dict:
    out = {}
    for name, (shape, kind, *bound) in model._backend.INPUTS.items():
        shape = tuple(int(g.dims["batch"]) if d is None else d for d in shape)
        out[name] = rng.integers(0, bound[0] if bound else 2, shape) if kind == "int" else rng.standard_normal(shape).astype(np.float32)
    return out


def measure(name: str) -> tuple[int, int, int, int]:
    g = sg.load(ROOT / "examples" / f"{name}.yaml")
    model = sg.compile(g, target="numpy", dtype="float32")
    train = model.program.train_graph
    roots = [train.loss, *model.program.gradients.values()]
    plan = numpy_backend.plan_scratch(schedule(train, roots, views=numpy_backend.VIEWS, in_place=False),
                                      numpy_backend.escaping(train, roots))
    item = np.dtype(np.float32).itemsize
    sizes = {node: numel(train.shape(node)) * item for node in plan}
    planned = sum(max(sizes[node] for node in plan if plan[node] == k) for k in set(plan.values()))
    model.loss_and_grads(model.init_params(0), inputs_for(model, g, np.random.default_rng(0)))
    held = sum((v if isinstance(v, np.ndarray) else v[0]).nbytes for v in vars(model._backend._SCRATCH).values())
    return len(plan), sum(sizes.values()), planned, held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", default=",".join(EXAMPLES))
    args = parser.parse_args()
    mib = 2.0**20
    print(f"{'example':12s} {'arrays':>6s} {'one each':>10s} {'planned':>10s} {'planned/one each':>17s} {'held':>10s}")
    for name in args.examples.split(","):
        arrays, one_each, planned, held = measure(name)
        ratio = planned / one_each if one_each else 1.0
        print(f"{name:12s} {arrays:6d} {one_each / mib:8.2f} MiB {planned / mib:6.2f} MiB {ratio:17.2f} {held / mib:6.2f} MiB")


if __name__ == "__main__":
    main()
