"""Algebraic simplification of element-wise clusters: fewer ops, the same values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.passes import CODEGEN, PIPELINE, optimize, simplify_elementwise

ROOT = Path(__file__).resolve().parents[2]

SPEC = """
name: redundant
dims: {batch: 4}
inputs: {x: {shape: [batch, 3]}}
params: {a: {shape: [3], init: normal(0.5)}}
graph:
  t: (a * x * 2) / 2 + a * x - a * x
  loss: sum(exp(t) / exp(t) * t)
loss: loss
"""


def ops(g) -> list[str]:
    return sorted(g.op(n) for n in g.nx if g.op(n) not in ("input", "param", "const"))


def test_cluster_is_rewritten_with_fewer_ops():
    g = sg.load(SPEC)
    simplified = optimize(simplify_elementwise(g), [])
    before, after = ops(g), ops(optimize(simplified, PIPELINE[-1:]))
    assert len(after) < len(before)
    assert "div" not in after and "exp" not in after
    assert "t" in simplified.nx and simplified.loss == "loss"  # spec names survive
    assert "div" in ops(g)  # the pass returned a new graph


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_values_survive(target):
    g = sg.load(SPEC)
    rng = np.random.default_rng(0)
    params, inputs = {"a": rng.standard_normal(3)}, {"x": rng.standard_normal((4, 3))}
    loss, grads = sg.compile(g, target=target, dtype="float64").loss_and_grads(params, inputs)
    ref_loss, ref_grads = sg.compile(g, target=target, dtype="float64", passes=[]).loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grads["a"], ref_grads["a"], rtol=1e-12)


SPECS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "benchmarks" / "models").glob("*.yaml"))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_node_the_passes_make_has_a_name(spec):
    """Passes build nodes as temporaries; none may reach generated code unnamed."""
    gg = optimize(differentiate(sg.load(spec)), CODEGEN)
    assert all(node.isidentifier() for node in gg.nx), [n for n in gg.nx if not n.isidentifier()]
