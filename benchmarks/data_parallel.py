"""Data-parallel training over MPI: one epoch of the NLM and TextCNN examples
with K = 1 and K = 2 processes, side by side in one run, and what those
measurements predict for a cluster.

    python benchmarks/data_parallel.py [--models nlm,textcnn] [--targets c,numpy] [--repeats 3] [--examples 20000]

For each model and target the trainer runs one epoch (on the first --examples
training examples, so that a run takes seconds) alone and under
``mpirun -np 2``; runs are interleaved and repeated, and the table gives the
median examples per second, the speed-up of K = 2 over K = 1, and the share of
the epoch spent in the allreduce (which includes waiting for the slower
process). The C trainer is built with ``make MPI=1``.

Then the model: with P parameters of b bytes, a step sums S = P*b bytes. A ring
allreduce over N machines moves 2 (N-1)/N * S bytes through each link, so at a
bandwidth of W bytes a second it takes

    t_comm(N) = 2 (N-1)/N * S / W + 2 (N-1) * latency

and with the global batch kept (as the trainer does), each machine computes
1/N of the step's t_step (measured here at K = 1):

    efficiency(N) = (t_step / N) / (t_step / N + t_comm(N))

without overlap of communication and computation (the trainer sums once the
backward pass is done).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import symgraph as sg
from symgraph.codegen import build_program

ROOT = Path(__file__).resolve().parents[1]
DATA = {"nlm": ROOT / "examples" / "kjv", "textcnn": ROOT / "examples" / "rotten_tomatoes"}
LINE = re.compile(r"^epoch .*  (\d+) ex/s(?:  \d+ processes, (\d+)% summing)?$", re.M)
LATENCY = 5e-6  # seconds per message hop: a typical Ethernet MPI latency


def prepare(model: str, examples: int, work: Path) -> Path:
    """The first `examples` training examples of the model's data set, as a data folder."""
    folder = DATA[model] / "data" / "train"
    if not folder.exists():
        subprocess.run([sys.executable, str(DATA[model] / "prepare.py")], check=True)
    out = work / f"{model}_data"
    out.mkdir()
    for file in folder.glob("*.npy"):
        np.save(out / file.name, np.load(file)[:examples])
    return out


def build(model: str, target: str, work: Path) -> list[str]:
    out = work / f"{model}_{target}"
    sg.compile(sg.load(str(ROOT / "examples" / f"{model}.yaml")), target=target, out_dir=out)
    if target == "numpy":
        return [sys.executable, str(out / "train.py")]
    subprocess.run(["make", "-s", "-C", str(out), "-B", "MPI=1"], check=True, capture_output=True)
    return [str(out / "train")]


def mpirun(k: int) -> list[str]:
    command = ["mpirun", "-q", "--oversubscribe", "--bind-to", "core", "-np", str(k)]
    return command + (["--allow-run-as-root"] if os.geteuid() == 0 else [])


def epoch(train: list[str], k: int, data: Path) -> tuple[float, float]:
    """(examples per second, share of the epoch in the allreduce) of one epoch."""
    result = subprocess.run([*mpirun(k), *train, "--data", str(data), "--epochs", "1"], capture_output=True, text=True, check=True)
    found = LINE.search(result.stdout)
    return float(found.group(1)), float(found.group(2) or 0) / 100


def parameters(model: str) -> int:
    program = build_program(sg.load(str(ROOT / "examples" / f"{model}.yaml")))
    return sum(math.prod(int(d) for d in leaf.shape) for leaf in program.params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="nlm,textcnn")
    parser.add_argument("--targets", default="c,numpy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=20000)
    args = parser.parse_args()
    if not shutil.which("mpirun"):
        sys.exit("mpirun is missing: install OpenMPI (Debian: openmpi-bin libopenmpi-dev)")
    work = Path(tempfile.mkdtemp(prefix="data_parallel."))
    rows, steps = [], {}
    try:
        for model in args.models.split(","):
            data = prepare(model, args.examples, work)
            batch = sg.load(str(ROOT / "examples" / f"{model}.yaml")).train.get("batch_size", 32)
            trainers = {target: build(model, target, work) for target in args.targets.split(",")}
            runs = {(target, k): [] for target in trainers for k in (1, 2)}
            for _ in range(args.repeats):  # interleaved, so that drifts in load hit all alike
                for (target, k), found in runs.items():
                    found.append(epoch(trainers[target], k, data))
            for target in trainers:
                one = statistics.median(rate for rate, _ in runs[target, 1])
                two = statistics.median(rate for rate, _ in runs[target, 2])
                share = statistics.median(part for _, part in runs[target, 2])
                rows.append((model, target, one, two, two / one, share))
                steps[model, target] = batch / one
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"one epoch of {args.examples} examples, median of {args.repeats}; {os.cpu_count()} cores")
    print(f"{'model':8} {'target':6} {'K=1 ex/s':>10} {'K=2 ex/s':>10} {'speed-up':>9} {'allreduce':>10}")
    for model, target, one, two, ratio, share in rows:
        print(f"{model:8} {target:6} {one:10.0f} {two:10.0f} {ratio:9.2f} {share:10.0%}")
    print("\nmodelled efficiency on N machines (ring allreduce, float32 gradients, global batch kept; see the docstring)")
    for (model, target), step in steps.items():
        size = parameters(model) * 4
        print(f"{model} ({target}): {size / 1e6:.2f} MB summed per step, {step * 1e3:.2f} ms of compute per step")
        for gbit in (10, 100):
            cells = []
            for n in (2, 4, 8, 16, 32):
                comm = 2 * (n - 1) / n * size / (gbit * 1e9 / 8) + 2 * (n - 1) * LATENCY
                cells.append(f"N={n}: {step / n / (step / n + comm):.0%}")
            print(f"  {gbit:3d} Gbit/s  " + "  ".join(cells))


if __name__ == "__main__":
    main()
