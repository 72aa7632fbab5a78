"""Derivation comments: every backward statement of the generated code says
which chain-rule step it implements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import symgraph as sg
from symgraph.codegen import build_program, render

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))

TANH = """
name: tanh_layer
dims: {batch: 4}
inputs: {x: {shape: [batch, 3]}, y: {shape: [batch, 2]}}
params: {W: {shape: [3, 2], init: xavier_uniform}}
graph:
  u: x @ W
  h: tanh(u)
  loss: mse(h, y)
loss: loss
"""


def sources(g):
    program = build_program(g, "float64")
    return program, render(program, "numpy")["model.py"], render(program, "c")["model.c"]


def test_tanh_step_reads_like_the_lecture():
    _, py, c = sources(sg.load(TANH))
    assert "    # dL/du = dL/dh*(1 - h**2)   [d tanh(u)/du]\n    du = " in py
    assert "/* dL/du = dL/dh*(1 - h**2)   [d tanh(u)/du] */" in c
    assert "# dL/dW = x.T @ dL/du   [d(x @ W)/dW]" in py


def test_lecture_backward_code():
    _, py, c = sources(sg.load(ROOT / "examples" / "slide.yaml"))
    assert "# dL/dc = a + d\n    e = a + d" in py
    assert "# dL/db = 2*dL/dd   [d(2*b)/db]\n    db = 2.0*c" in py
    assert "/* dL/db = 2*dL/dd   [d(2*b)/db] */" in c


def backward_function(text: str, start: str) -> list[str]:
    lines = text[text.index(start):].splitlines()
    return lines[: next(i for i, line in enumerate(lines[1:], 1) if line and not line[0].isspace() and line != "}")]


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_backward_statement_has_its_step(example):
    program, py, c = sources(sg.load(ROOT / "examples" / f"{example}.yaml"))
    g = program.train_graph
    backward = {n for n, data in g.nx.nodes(data=True) if "chain" in data} | set(g.cotangents.values())
    backward -= set(g.params) | set(g.inputs)
    assert backward
    checked = 0
    for lines, pattern, comment in (
        (backward_function(py, "def loss_and_grads"), r"    (\w+) = ", "    # "),
        (backward_function(c, f"int {g.name}_loss_and_grads"), r"    real \*(\w+) = ", "    /* "),
    ):
        for i, line in enumerate(lines):
            m = re.match(pattern, line)
            if m and m.group(1) in backward:
                # a statement may take several lines; its comments come first
                j = i - 1
                while j > 0 and not lines[j].startswith(comment):
                    other = re.match(pattern, lines[j])
                    if other and other.group(1) in g.nx:
                        break
                    j -= 1
                block = []  # the comment lines right above the statement
                while j > 0 and lines[j].startswith(comment):
                    block.append(lines[j])
                    j -= 1
                assert any(c.startswith((comment + "dL/d", comment + "part of dL/d")) for c in block), (
                    f"{example}: no derivation above {line!r}"
                )
                checked += 1
    assert checked >= 2
