"""The lowering pass: cross-entropy's gradient becomes one fused op, with the same values."""

from __future__ import annotations

import numpy as np
import pytest

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.passes import PIPELINE, fuse_softmax_cross_entropy, optimize

SPEC = """
name: head
dims: {batch: %d}
inputs: {x: {shape: [batch, 3]}, y: {shape: [batch], dtype: int}}
params: {W: {shape: [3, 5], init: normal(0.5)}}
graph:
  logits: x @ W
  loss: cross_entropy(logits, y)
loss: loss
"""


@pytest.mark.parametrize("batch", [4, 1])  # with a batch of 1 the scale folds away: s = 1
def test_fused_structure(batch):
    textbook = optimize(differentiate(sg.load(SPEC % batch)), PIPELINE)
    ops = [textbook.op(n) for n in textbook.nx]
    assert {"softmax", "onehot", "sub"} <= set(ops)
    fused = optimize(fuse_softmax_cross_entropy(textbook), PIPELINE)
    ops = [fused.op(n) for n in fused.nx]
    assert ops.count("softmax_cross_entropy_grad") == 1
    assert not {"softmax", "onehot", "sub"} & set(ops)
    node = next(n for n in fused.nx if fused.op(n) == "softmax_cross_entropy_grad")
    assert fused.args(node)[:2] == ["logits", "y"]
    assert fused.cotangents["logits"] == node  # the adjoint keeps its name and role
    assert textbook is not fused and "softmax" in {textbook.op(n) for n in textbook.nx}  # a pure function


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("batch", [4, 1])
def test_fused_values(target, batch):
    g = sg.load(SPEC % batch)
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 5))}
    inputs = {"x": rng.standard_normal((batch, 3)), "y": rng.integers(0, 5, batch)}
    loss, grads = sg.compile(g, target=target, dtype="float64").loss_and_grads(params, inputs)
    ref_loss, ref_grads = sg.compile(g, target=target, dtype="float64", passes=PIPELINE).loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grads["W"], ref_grads["W"], rtol=1e-12, atol=1e-15)
