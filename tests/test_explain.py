"""Derived gradients as printed by ``sg.explain`` and ``symgraph grad``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_lecture_gradients_with_values(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "dL/da = c = -2",
        "dL/db = 2*c = -4",
        "dL/dc = a + 2*b = 5",
    ]


def test_wrt_selects_one_gradient(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--wrt", "c"]) == 0
    assert capsys.readouterr().out.strip() == "dL/dc = a + 2*b = 5"


def test_latex(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\partial L}{\partial b} &= 2 c = -4" in out
    assert sg.explain(sg.load(ROOT / "examples" / "slide.yaml"))._repr_latex_().startswith("$$")


def test_logistic_regression_bias_gradient_is_the_textbook_mean():
    text = str(sg.explain(sg.load(ROOT / "examples" / "logreg.yaml"), wrt="b"))
    assert "dz = (sigmoid(z) - y)/batch" in text.splitlines()
    assert "db = mean(sigmoid(z) - y, axis=0)" in text.splitlines()


def test_mlp_gradient_program_reads_like_the_textbook():
    lines = str(sg.explain(sg.load(ROOT / "examples" / "mlp.yaml"))).splitlines()
    assert "dlogits = (softmax(logits) - onehot(y))/batch" in lines
    assert "dW2 = h.T @ dlogits" in lines
    assert "dh = dlogits @ W2.T" in lines
    assert "dW1 = x.T @ dh_2" in lines


def test_unknown_wrt_is_bad_input(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--wrt", "zzz"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


SCALAR_CHAINS = {
    "three tanh layers": "params: {a: {shape: [], value: 0.5}, b: {shape: [], value: -0.3}}\n"
    "graph: {h1: tanh(a * b + a), h2: tanh(h1 * a + b), h3: tanh(h2 * b + h1), L: h3 * h3}\nloss: L\n",
    "every function": "params: {p: {shape: [], value: 0.7}, q: {shape: [], value: 1.3}}\n"
    "graph: {u: exp(p) + log(q), v: sqrt(u * q) + tanh(p), w: sigmoid(v) * abs(p - q), L: w * u}\nloss: L\n",
}


@pytest.mark.parametrize("name", sorted(SCALAR_CHAINS))
def test_grad_of_a_scalar_chain_is_quick_and_its_values_are_the_models(name, tmp_path):
    """sympy.simplify took minutes on three tanh layers, and a value with sigmoid
    in it raised TypeError; the values printed equal the compiled model's gradients."""
    spec = tmp_path / "chain.yaml"
    spec.write_text(SCALAR_CHAINS[name])
    done = subprocess.run([sys.executable, "-m", "symgraph.cli", "grad", str(spec)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    g = sg.load(spec)
    model = sg.compile(g, target="numpy", dtype="float64")
    params = {p: np.array(g.nx.nodes[p]["value"]) for p in g.params}
    _, grads = model.loss_and_grads(params, {})
    printed = {line.split(" = ")[0][len("dL/d"):]: float(line.rsplit(" = ", 1)[1]) for line in done.stdout.splitlines()}
    assert set(printed) == set(g.params)
    for p in g.params:
        assert abs(printed[p] - float(grads[p])) <= 1e-5 * max(1.0, abs(float(grads[p]))), (p, printed[p], grads[p])


@pytest.mark.parametrize("spec", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")))
def test_grad_runs_on_every_example_within_a_minute(spec):
    path = Path(__file__).resolve().parents[1] / "examples" / spec
    done = subprocess.run([sys.executable, "-m", "symgraph.cli", "grad", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("d"), done.stderr


GRAPHS_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import symgraph as sg
from conftest import one_op_graph
from differential import generate
from test_gradients import ROWS
for name, (args, attrs) in sorted(ROWS.items()):
    str(sg.explain(one_op_graph(name, args, attrs)))
for seed in range({seeds}):
    str(sg.explain(sg.load(generate(seed).text)))
print("done")
"""


def test_grad_runs_on_every_test_graph_within_its_time():
    """Every gradient-row graph and 40 of the differential fuzzer's graphs:
    explained in one process, within two minutes in all."""
    script = GRAPHS_SCRIPT.format(tests=str(Path(__file__).resolve().parent), seeds=40)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]


def test_latex_keeps_names_that_are_not_one_subscript_whole():
    """a_b_c is no a with subscript "b c", and _X no bare subscript."""
    g = sg.load("params: {_X: {shape: [], value: 2}, a_b_c: {shape: [], value: 3}, x_1: {shape: [], value: 1}}\n"
                "graph: {L: _X * a_b_c * x_1}\nloss: L\n")
    text = sg.explain(g).latex()
    assert r"\partial \mathit{\_X}" in text and r"\mathit{a\_b\_c}" in text and "x_{1}" in text and "a_{b c}" not in text


def test_a_sum_that_keeps_its_axes_says_so():
    """softmax's backward sums along the axis and keeps it: written without
    keepdims, the step would broadcast the wrong way when read as NumPy."""
    g = sg.load("""
name: soft
params: {z: {shape: [3, 4]}, t: {shape: [3, 4]}}
graph:
  p: softmax(z, axis=-1)
  loss: sum(p * t)
loss: loss
""")
    text = str(sg.explain(g, wrt="z"))
    assert "axis=1, keepdims=True)" in text, text
