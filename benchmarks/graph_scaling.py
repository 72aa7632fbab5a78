"""Compile time against graph size: spec to NumPy and C sources for synthetic
graphs of about 100, 1,000 and 10,000 forward nodes.

    python benchmarks/graph_scaling.py [--sizes 100,1000,10000] [--json scaling.json]

Two families: a deep MLP (tanh layers of width 8) and a wide element-wise DAG
(each node mixes three earlier ones with tanh, * and +). For each graph it
times differentiation and optimisation (the CODEGEN passes) on their own, then
the whole way from the spec's graph to both targets' sources (build_program
and render; no C compiler runs), and prints that total per 1,000 forward nodes,
which stays about flat when the work grows linearly.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.codegen import build_program, render
from symgraph.passes import CODEGEN, optimize


def deep_mlp(nodes: int) -> sg.Graph:
    """About 5 forward nodes per layer: W, b, matmul, add, tanh."""
    g = sg.Graph("deep_mlp", dims={"batch": 16})
    h = g.input("x", ["batch", 8])
    for i in range(max(1, nodes // 5)):
        w = g.param(f"W{i}", [8, 8], init="xavier_uniform")
        b = g.param(f"b{i}", [8], init="zeros")
        h = g.define(f"h{i}", sg.tanh(h @ w + b))
    g.set_loss(g.define("loss", sg.mean(h * h)))
    return g


def wide_dag(nodes: int) -> sg.Graph:
    """About 3 forward nodes per line: t_i = tanh(t_{i-1} * t_{i-j}) + t_{i-k}."""
    g = sg.Graph("wide_dag", dims={"batch": 16})
    values = [g.input("x", ["batch", 4]), g.param("a", [4], init="normal(0.5)"), g.param("c", [4], init="normal(0.5)")]
    lines = max(1, nodes // 3)
    for i in range(lines):
        j, k = 2 + (i * 7) % 11, 3 + (i * 5) % 13
        earlier = len(values)
        t = sg.tanh(values[-1] * values[max(0, earlier - j)]) + values[max(0, earlier - k)]
        values.append(g.define(f"t{i}", t))
    g.set_loss(g.define("loss", sg.mean(values[-1])))
    return g


def measure(g: sg.Graph) -> dict:
    started = time.perf_counter()
    gg = differentiate(g)
    derived = time.perf_counter()
    optimize(gg, CODEGEN)
    optimised = time.perf_counter()
    # build_program is both of these for the training graph, and the same for the evaluation graph
    program = build_program(g, "float32")
    built = time.perf_counter()
    files = {**render(program, "numpy"), **render(program, "c")}
    rendered = time.perf_counter()
    return {
        "forward_nodes": g.nx.number_of_nodes(),
        "gradient_graph_nodes": gg.nx.number_of_nodes(),
        "differentiate_s": derived - started,
        "optimise_s": optimised - derived,
        "render_s": rendered - built,
        "source_bytes": sum(len(text) for text in files.values()),
        "total_s": (built - optimised) + (rendered - built),  # spec graph to both targets' sources
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--json", default="graph_scaling.json")
    args = parser.parse_args()
    results = []
    print(f"{'graph':<9} {'nodes':>6} {'grad nodes':>10} {'diff s':>7} {'opt s':>7} {'render s':>8} {'total s':>8} {'s/1k nodes':>10}")
    # total: build_program (differentiate and optimise the training and evaluation graphs) and render
    for family in (deep_mlp, wide_dag):
        for size in (int(s) for s in args.sizes.split(",")):
            g = family(size)
            row = {"graph": family.__name__, "requested": size, **measure(g)}
            results.append(row)
            per_k = 1000 * row["total_s"] / row["forward_nodes"]
            print(f"{family.__name__:<9} {row['forward_nodes']:>6} {row['gradient_graph_nodes']:>10} {row['differentiate_s']:>7.2f} "
                  f"{row['optimise_s']:>7.2f} {row['render_s']:>8.2f} {row['total_s']:>8.2f} {per_k:>10.3f}", flush=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
