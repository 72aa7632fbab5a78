"""The generated C conv2d against PyTorch's CPU conv2d, float32, one thread,
on the shapes of the LeNet-style digits CNN and of two larger image layers.

    python benchmarks/conv2d.py [--blocks 7] [--json conv2d.json]

A fresh process with one thread everywhere (OMP_NUM_THREADS=1, and
torch.set_num_threads(1)) builds, for each shape, the generated C model of
``y = conv2d(x, K, padding=1)`` (-O3 -march=native) and times, in
interleaved blocks:
  forward   the model's forward (y alone) against torch.nn.functional.conv2d
            on the same data in PyTorch's own layout, [batch, c, h, w];
  backward  loss_and_grads of sum(y * t), x and K both parameters, so dx and
            dK are computed, against PyTorch's forward and backward of the same.
It prints the median microseconds of each and PyTorch's time over ours (above
1: ours is faster). Needs PyTorch (pip install torch); it is no dependency.
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

# (name, batch, height, width, c_in, c_out, kernel): the digits CNN's two layers, then larger images
SHAPES = (
    ("digits conv 1", 32, 8, 8, 1, 16, 3),
    ("digits conv 2", 32, 4, 4, 16, 32, 3),
    ("28x28, 16 -> 32", 32, 28, 28, 16, 32, 3),
    ("32x32, 32 -> 64", 16, 32, 32, 32, 64, 3),
)
SPEC = """
name: conv
dims: {{batch: {b}}}
inputs: {{t: {{shape: [batch, {h}, {w}, {o}]}}}}
params:
  x: {{shape: [{b}, {h}, {w}, {c}], init: normal(1.0)}}
  K: {{shape: [{k}, {k}, {c}, {o}], init: he_normal}}
graph:
  y: conv2d(x, K, padding={p})
  loss: sum(y * t)
loss: loss
outputs: [y]
"""
IDLE = 0.1


def timed(run, reps: int) -> float:
    started = time.perf_counter()
    for _ in range(reps):
        run()
    return (time.perf_counter() - started) / reps


def worker(blocks: int) -> list[dict]:
    import numpy as np
    import torch

    import symgraph as sg
    from symgraph import native
    from symgraph.codegen import build_program, render
    from symgraph.codegen.c import LIBRARY

    torch.set_num_threads(1)
    rows = []
    for name, b, h, w, c, o, k in SHAPES:
        g = sg.load(SPEC.format(b=b, h=h, w=w, c=c, o=o, k=k, p=k // 2))
        program = build_program(g, "float32")
        files = render(program, "c")
        library = native.Library(program, native.build({f: files[f] for f in LIBRARY}))
        rng = np.random.default_rng(0)
        params = {"x": rng.standard_normal((b, h, w, c), dtype=np.float32), "K": rng.standard_normal((k, k, c, o), dtype=np.float32)}
        t = rng.standard_normal((b, h, w, o), dtype=np.float32)
        x_torch = torch.from_numpy(params["x"].transpose(0, 3, 1, 2).copy()).requires_grad_()
        k_torch = torch.from_numpy(params["K"].transpose(3, 2, 0, 1).copy()).requires_grad_()
        t_torch = torch.from_numpy(t.transpose(0, 3, 1, 2).copy())
        expected = torch.nn.functional.conv2d(x_torch, k_torch, padding=k // 2).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(library.forward(params, {"t": t})["y"], expected, rtol=1e-3, atol=1e-3)

        def ours_forward():
            library.forward(params, {"t": t})

        def ours_backward():
            library.loss_and_grads(params, {"t": t})

        def torch_forward():
            with torch.no_grad():
                torch.nn.functional.conv2d(x_torch, k_torch, padding=k // 2)

        def torch_backward():
            x_torch.grad = k_torch.grad = None
            (torch.nn.functional.conv2d(x_torch, k_torch, padding=k // 2) * t_torch).sum().backward()

        flops = 2 * b * h * w * c * o * k * k
        reps = max(3, int(0.2e9 / flops))  # a block of about 0.1 s at 2 GFLOP/s
        for kind, ours_run, torch_run in (("forward", ours_forward, torch_forward), ("backward", ours_backward, torch_backward)):
            ours_run(), torch_run()
            ours, theirs = [], []
            for _ in range(blocks):
                time.sleep(IDLE)
                ours.append(timed(ours_run, reps))
                time.sleep(IDLE)
                theirs.append(timed(torch_run, reps))
            rows.append({"shape": name, "pass": kind, "generated_us": statistics.median(ours) * 1e6,
                         "pytorch_us": statistics.median(theirs) * 1e6})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--json", default="conv2d.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.blocks)))
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--worker", "--blocks", str(args.blocks)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the worker failed")
    rows = json.loads(done.stdout)
    print(f"{'shape':<17} {'pass':<9} {'generated us':>13} {'PyTorch us':>11} {'PyTorch/ours':>13}")
    for row in rows:
        ratio = row["pytorch_us"] / row["generated_us"]
        print(f"{row['shape']:<17} {row['pass']:<9} {row['generated_us']:>13.1f} {row['pytorch_us']:>11.1f} {ratio:>13.2f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
