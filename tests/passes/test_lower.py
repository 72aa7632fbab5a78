"""The lowering pass: cross-entropy's gradient becomes one fused op, with the same values."""

from __future__ import annotations

import numpy as np
import pytest

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.passes import CODEGEN, PIPELINE, bias_products, contract_products, fuse_softmax_cross_entropy, optimize

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


CONTRACTED = """
name: contracted
dims: {batch: %d, features: 5}
inputs: {x: {shape: [batch, features]}, y: {shape: [batch]}}
params: {w: {shape: [features], init: normal(0.5)}, b: {shape: [], init: zeros}}
graph:
  z: sum(x * w, axis=1) + b
  loss: binary_cross_entropy(z, y)
loss: loss
outputs: [z]
"""


def test_products_summed_over_an_axis_become_matrix_vector_products():
    textbook = optimize(differentiate(sg.load(CONTRACTED % 6)), PIPELINE)
    lowered = contract_products(textbook)
    ops = {n: lowered.op(n) for n in lowered.nx}
    forward, backward = (n for n in lowered.order() if ops[n] == "matvec")
    assert lowered.args(forward) == ["x", "w"] and not lowered.attrs(forward)["transposed"]
    assert lowered.attrs(backward)["transposed"] and lowered.gradients["w"] == backward
    assert lowered.chain(backward) == textbook.chain(backward)  # the step it stands for stays
    assert "matvec" not in {textbook.op(n) for n in textbook.nx}  # a pure function


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("batch", [6, 1])
def test_contracted_values(target, batch):
    g = sg.load(CONTRACTED % batch)
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal(5), "b": np.array(0.3)}
    inputs = {"x": rng.standard_normal((batch, 5)), "y": rng.uniform(0, 1, batch)}
    lowered = sg.compile(g, target=target, dtype="float64", passes=CODEGEN)
    assert "matvec" in {lowered.program.train_graph.op(n) for n in lowered.program.train_graph.nx}
    loss, grads = lowered.loss_and_grads(params, inputs)
    ref_loss, ref_grads = sg.compile(g, target=target, dtype="float64", passes=PIPELINE).loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lowered.forward(params, inputs)["z"], inputs["x"] @ params["w"] + 0.3, rtol=1e-13)


BIASED = """
name: biased
dims: {batch: %d}
inputs: {x: {shape: [batch, 3]}, y: {shape: [batch], dtype: int}}
params: {W: {shape: [3, 4], init: normal(0.5)}, b: {shape: [4], init: normal(0.5)}, V: {shape: [4, 5], init: normal(0.5)}}
graph:
  h: tanh(x @ W + b)
  shared: h @ V
  logits: shared + 0.5
  loss: cross_entropy(logits + shared, y)
loss: loss
outputs: [h]
"""


def test_a_product_plus_a_bias_becomes_one_op_that_keeps_its_place():
    textbook = optimize(differentiate(sg.load(BIASED % 4)), PIPELINE)
    lowered = bias_products(textbook)
    ops = [lowered.op(n) for n in lowered.nx]
    assert ops.count("matmul_bias") == 1  # h @ V is read twice: it stays a product
    (node,) = [n for n in lowered.nx if lowered.op(n) == "matmul_bias"]
    assert lowered.args(node) == ["x", "W", "b"]
    assert lowered.cotangents.get(node) == textbook.cotangents.get(node)  # its adjoint, for the comments
    assert "matmul_bias" not in {textbook.op(n) for n in textbook.nx}


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("batch", [4, 1])
def test_biased_values(target, batch):
    g = sg.load(BIASED % batch)
    rng = np.random.default_rng(2)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4), "V": rng.standard_normal((4, 5))}
    inputs = {"x": rng.standard_normal((batch, 3)), "y": rng.integers(0, 5, batch)}
    lowered = sg.compile(g, target=target, dtype="float64", passes=CODEGEN)
    loss, grads = lowered.loss_and_grads(params, inputs)
    ref_loss, ref_grads = sg.compile(g, target=target, dtype="float64", passes=PIPELINE).loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lowered.forward(params, inputs)["h"], np.tanh(inputs["x"] @ params["W"] + params["b"]), rtol=1e-13)


# x @ W over a stack of sequences: W's gradient sums a stack of products; a spec's own
# sum of stacked products (not a transpose) is lowered too, and so is nothing broadcast.
STACKED = """
name: stacked
dims: {batch: %d}
inputs: {x: {shape: [batch, 3, 4]}, t: {shape: [5, 2]}}
params: {W: {shape: [4, 5], init: normal(0.5)}, A: {shape: [2, 5, 3], init: normal(0.5)}, B: {shape: [2, 3, 2], init: normal(0.5)}}
graph:
  h: tanh(x @ W)
  own: sum(A @ B, axis=0)
  loss: sum(h * h) + sum(own * t)
loss: loss
outputs: [h]
"""


def test_a_stack_of_products_summed_over_the_stack_becomes_one_product():
    textbook = optimize(differentiate(sg.load(STACKED % 4)), PIPELINE)
    lowered = optimize(textbook, CODEGEN)
    sums = {tuple(lowered.args(n)): lowered.attrs(n)["transposed"] for n in lowered.nx if lowered.op(n) == "matmul_sum"}
    assert sums.get(("A", "B")) is False  # the spec's own sum
    assert True in sums.values()  # dW = sum(x.T @ dh) over the batch, x read across
    assert "matmul_sum" not in {textbook.op(n) for n in textbook.nx}


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("batch", [4, 1])
def test_summed_products_values(target, batch):
    g = sg.load(STACKED % batch)
    rng = np.random.default_rng(3)
    params = {"W": rng.standard_normal((4, 5)), "A": rng.standard_normal((2, 5, 3)), "B": rng.standard_normal((2, 3, 2))}
    inputs = {"x": rng.standard_normal((batch, 3, 4)), "t": rng.standard_normal((5, 2))}
    loss, grads = sg.compile(g, target=target, dtype="float64", passes=CODEGEN).loss_and_grads(params, inputs)
    ref_loss, ref_grads = sg.compile(g, target=target, dtype="float64", passes=PIPELINE).loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-14)
    h = np.tanh(inputs["x"] @ params["W"])
    np.testing.assert_allclose(grads["W"], 2 * np.einsum("bsk,bsn->kn", inputs["x"], h * (1 - h * h)), rtol=1e-12)
