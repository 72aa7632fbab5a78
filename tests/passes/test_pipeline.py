"""Property: random graphs keep their value and gradients through the pipeline."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import symgraph as sg
from symgraph.passes import PIPELINE, optimize

UNARY = ["exp", "tanh", "sigmoid", "neg", "abs"]
BINARY = ["+", "-", "*"]


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["a", "b", "x", "2", "0", "1"]))
    if draw(st.booleans()):
        return f"{draw(st.sampled_from(UNARY))}({draw(expressions(depth=depth - 1))})"
    left, right = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    return f"({left} {draw(st.sampled_from(BINARY))} {right})"


@settings(max_examples=40, deadline=None)
@given(st.lists(expressions(), min_size=1, max_size=3))
def test_pipeline_preserves_values(bodies):
    lines = [f"  t{i}: {body} * a" for i, body in enumerate(bodies)]
    total = " + ".join(f"sum(t{i})" for i in range(len(bodies)))
    spec = "inputs: {x: {shape: [3]}}\nparams: {a: {shape: [3]}, b: {shape: [1]}}\ngraph:\n" + "\n".join(lines) + f"\n  L: {total}\nloss: L\n"
    g = sg.load(spec)
    model = sg.compile(g, dtype="float64")
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal(3), "b": rng.standard_normal(1)}
    inputs = {"x": rng.standard_normal(3)}
    loss, grads = model.loss_and_grads(params, inputs)
    reference = sg.compile(g, dtype="float64", passes=[])  # no optimisation at all
    ref_loss, ref_grads = reference.loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-12)
    assert optimize(g, PIPELINE, check=True) is not None
