"""One float32 training step (loss, gradients, SGD update) of the five
reference models, timed side by side in one run.

    python benchmarks/train_step.py [--blocks 7] [--seconds 0.2] [--models mlp,nlm] [--json results.json]

Runs, for each model in ``benchmarks/models/``:
  c          the generated C's sgd_step (cc -O3 -march=native), one thread;
  c-openmp   the same sources built with -fopenmp, OMP_NUM_THREADS = the cores,
             OMP_PROC_BIND=true (each thread on a core of its own; see below);
  numpy      the generated NumPy module (loss_and_grads, then sgd_step);
  by-hand    a hand-written NumPy step (``references.py``);
  pytorch    PyTorch eager (OMP_PROC_BIND=true too), and jax: JAX jit, when
             they are installed.
Each runs in a process of its own (so that thread pools do not compete),
every one starts from the same parameters and inputs, and their first
losses must agree. Blocks of steps (each about ``--seconds`` long) are
interleaved across implementations, so that drifts in machine load hit all
alike; the table gives the median block's microseconds per step and ratios (how
many times faster than PyTorch and JAX).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import symgraph as sg
from symgraph.codegen import build_program, render
from symgraph.codegen.c import LIBRARY
from symgraph.gradcheck import random_inputs

HERE = Path(__file__).resolve().parent
MODELS = ("slide", "logreg", "mlp", "nlm", "textcnn")
# Between blocks: the thread pools of OpenBLAS, OpenMP, PyTorch and XLA spin for
# a while after their work is done (OpenBLAS's for about 0.1 s), and would
# otherwise take a core from the next block.
IDLE = 0.3


class Process:
    """One implementation in a process of its own; ``run(steps)`` returns (seconds, last loss)."""

    def __init__(self, name: str, command: list[str], env: dict | None = None):
        self.name = name
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def run(self, steps: int) -> tuple[float, float]:
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().split()
        if len(answer) != 2:
            raise SystemExit(f"{self.name} stopped (exit status {self.process.wait()})")
        return float(answer[0]), float(answer[1])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def generated_c(g, params, inputs, folder: Path, openmp: bool) -> Process:
    """The generated model.c with the step harness, built as the trainer's Makefile builds it."""
    name = "c-openmp" if openmp else "c"
    program = build_program(g, "float32")
    files = render(program, "c")
    build = folder / name
    build.mkdir()
    for file in LIBRARY:
        (build / file).write_text(files[file])
    for i, leaf in enumerate(program.params):
        np.asarray(params[leaf.name], np.float32).tofile(build / f"param_{i}.bin")
    for i, leaf in enumerate(program.inputs):
        np.asarray(inputs[leaf.name], np.int64 if leaf.dtype == "int" else np.float32).tofile(build / f"input_{i}.bin")
    cc = os.environ.get("CC", "cc")
    flags = ["-O3", "-march=native", "-std=c99"] + (["-fopenmp"] if openmp else [])
    subprocess.run([cc, *flags, f"-DMODEL={g.name}", "-I", str(build), str(HERE / "step_harness.c"), str(build / "model.c"),
                    "-o", str(build / "step"), "-lm"], check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count() if openmp else 1))
    if openmp:
        # Unbound, the scheduler may wake both threads on one core after an idle
        # pause; the one waiting at a barrier then spins on the other's core, and
        # products ran at a quarter of one thread's speed for tens of milliseconds.
        env["OMP_PROC_BIND"] = "true"
    return Process(name, [str(build / "step"), str(build)], env)


def implementations(g, spec: Path, folder: Path, frameworks: list[str]) -> list[Process]:
    model = sg.compile(g, target="numpy", dtype="float32")
    params = model.init_params(1)
    inputs = {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in random_inputs(model, seed=1).items()}
    if g.name == "logreg":
        inputs["y"] = (inputs["y"] > 0).astype(np.float32)  # labels of 0 and 1
    np.savez(folder / "params.npz", **params)
    np.savez(folder / "inputs.npz", **inputs)
    found = [generated_c(g, params, inputs, folder, openmp=False), generated_c(g, params, inputs, folder, openmp=True)]
    for kind in ["numpy", "by-hand", *frameworks]:
        # PyTorch's threads are OpenMP's too: bound like ours (JAX's pool is its own)
        env = dict(os.environ, OMP_PROC_BIND="true") if kind == "pytorch" else None
        found.append(Process(kind, [sys.executable, str(HERE / "step_worker.py"), kind, str(spec), str(folder)], env))
    return found


def installed() -> list[str]:
    out = []
    for module, name in (("torch", "pytorch"), ("jax", "jax")):
        try:
            __import__(module)
            out.append(name)
        except ImportError:
            print(f"({name} is not installed: skipped)", file=sys.stderr)
    return out


def versions() -> dict:
    found = {"python": platform.python_version(), "numpy": np.__version__, "cores": os.cpu_count(), "machine": platform.machine()}
    for module in ("torch", "jax"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            pass
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc):
        found["cc"] = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return found


def measure(g, spec: Path, blocks: int, seconds: float, frameworks: list[str]) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="symgraph-bench-") as folder:
        impls = implementations(g, spec, Path(folder), frameworks)
        try:
            first = {impl.name: impl.run(1)[1] for impl in impls}  # also compiles the JAX step
            reference = first["by-hand"]
            for name, loss in first.items():
                if not np.isclose(loss, reference, rtol=1e-4, atol=1e-6):
                    raise SystemExit(f"{g.name}: {name}'s first loss {loss} differs from the hand-written {reference}")
            steps = {}
            for impl in impls:  # calibrate each to blocks of about `seconds`
                elapsed, _ = impl.run(3)
                steps[impl.name] = max(1, int(seconds / max(elapsed / 3, 1e-7)))
            for impl in impls:  # warm up: allocators and caches reach their steady state only after a while
                impl.run(3 * steps[impl.name])
            times = {impl.name: [] for impl in impls}
            for _ in range(blocks):
                for impl in impls:
                    time.sleep(IDLE)
                    elapsed, _ = impl.run(steps[impl.name])
                    times[impl.name].append(elapsed / steps[impl.name])
            return times
        finally:
            for impl in impls:
                impl.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=7, help="interleaved blocks per implementation (the median is reported)")
    parser.add_argument("--seconds", type=float, default=0.2, help="about how long one block runs")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--json", default="train_step.json", help="where to write every block's time")
    args = parser.parse_args()
    frameworks = installed()
    results = {}
    header = f"{'model':<8} {'implementation':<15} {'us/step':>10} {'vs pytorch':>11} {'vs jax':>7}"
    print(header)
    for name in args.models.split(","):
        spec = HERE / "models" / f"{name}.yaml"
        times = measure(sg.load(spec), spec, args.blocks, args.seconds, frameworks)
        medians = {impl: statistics.median(t) for impl, t in times.items()}
        results[name] = {impl: {"median_us": 1e6 * medians[impl], "blocks_us": [1e6 * t for t in times[impl]]} for impl in times}
        for impl, median in medians.items():
            # ratio > 1: this implementation is that many times faster than the reference
            ratios = [f"{medians[ref] / median:>{w}.2f}" if ref in medians else " " * w for ref, w in (("pytorch", 11), ("jax", 7))]
            print(f"{name:<8} {impl:<15} {1e6 * median:>10.2f} {ratios[0]} {ratios[1]}")
            results[name][impl].update({f"speedup_vs_{ref}": medians[ref] / median for ref in ("pytorch", "jax") if ref in medians})
        sys.stdout.flush()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"versions": versions(), "blocks": args.blocks, "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
