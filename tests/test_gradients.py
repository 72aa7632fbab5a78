"""Every op's VJP against central differences in float64, through the generated
code of both targets, and the C target against the NumPy target.

One row per op that has a VJP: its argument shapes (and dtypes) and attrs.
Ops without a VJP are the backward kernels; the coverage test checks that
some row's gradient graph exercises each of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.codegen import numpy as numpy_backend
from symgraph.ops import REGISTRY
from symgraph.passes import CODEGEN, PIPELINE, optimize

from conftest import ATOL, RTOL, central_difference_errors, inputs_for, one_op_graph, sample

F, I = "float", "int"

ROWS = {
    "add": ([((3, 4), F), ((4,), F)], {}),
    "sub": ([((3, 4), F), ((3, 1), F)], {}),
    "mul": ([((2, 3), F), ((2, 3), F)], {}),
    "div": ([((3,), F), ((2, 3), F)], {}),
    "neg": ([((3,), F)], {}),
    "pow": ([((4,), F)], {"p": 3.0}),
    "exp": ([((3, 2), F)], {}),
    "log": ([((5,), F)], {}),
    "sqrt": ([((5,), F)], {}),
    "abs": ([((5,), F)], {}),
    "sigmoid": ([((5,), F)], {}),
    "tanh": ([((5,), F)], {}),
    "relu": ([((2, 5), F)], {}),
    "step": ([((5,), F)], {}),
    "sign": ([((5,), F)], {}),
    "leaky_relu": ([((2, 5), F)], {"slope": 0.2}),
    "elu": ([((2, 5), F)], {"alpha": 1.5}),
    "softplus": ([((5,), F)], {}),
    "silu": ([((5,), F)], {}),
    "erf": ([((5,), F)], {}),
    "gelu": ([((2, 5), F)], {}),
    "gelu_tanh": ([((2, 5), F)], {}),
    "matmul": ([((2, 3, 4), F), ((4, 5), F)], {}),
    "transpose": ([((2, 3, 4), F)], {"axes": (1, 2, 0)}),
    "reshape": ([((2, 6), F)], {"shape": (3, -1)}),
    "flatten": ([((2, 3, 4), F)], {}),
    "concat": ([((2, 3), F), ((2, 2), F)], {"axis": 1}),
    "slice": ([((2, 5), F)], {"axis": 1, "start": 1, "stop": 4}),
    "pad_slice": ([((2, 3), F)], {"axis": 1, "start": 1, "stop": 4, "size": 6}),
    "sum": ([((2, 3, 4), F)], {"axis": (0, 2)}),
    "mean": ([((2, 3, 4), F)], {"axis": 1, "keepdims": True}),
    "max": ([((3, 4, 2), F)], {"axis": 1}),
    "broadcast_to": ([((3, 1), F)], {"shape": (2, 3, 4)}),
    "sum_to": ([((2, 3, 4), F)], {"shape": (3, 1)}),
    "embedding": ([((5, 3), F), ((2, 4), I)], {}),
    "conv1d": ([((2, 7, 3), F), ((3, 3, 4), F)], {"stride": 2, "padding": 1}),
    "max_pool1d": ([((2, 7, 3), F)], {"size": 3, "stride": 2}),
    "avg_pool1d": ([((2, 8, 3), F)], {"size": 2}),
    "conv2d": ([((2, 6, 5, 3), F), ((3, 2, 3, 4), F)], {"stride": 2, "padding": 1}),
    "max_pool2d": ([((2, 5, 7, 3), F)], {"size": 3, "stride": 2}),
    "avg_pool2d": ([((2, 4, 6, 3), F)], {"size": 2}),
    "upsample2d": ([((2, 3, 2, 3), F)], {"factor": 3}),
    "layer_norm": ([((3, 4, 5), F)], {"axis": 1}),
    "dropout": ([((3, 4), F)], {"p": 0.5}),
    "softmax": ([((3, 4), F)], {"axis": 0}),
    "log_softmax": ([((3, 4), F)], {}),
    "cross_entropy": ([((4, 5), F), ((4,), I)], {}),
    "binary_cross_entropy": ([((6,), F), ((6,), F)], {}),
    "mse": ([((3, 2), F), ((3, 2), F)], {}),
}


def differentiable(name: str) -> bool:
    op = REGISTRY[name]
    return op.vjp is not None or op.macro


OPS = sorted(n for n in REGISTRY if differentiable(n) and not REGISTRY[n].random)
# numpy-scratch: every intermediate array, however small, goes to a reused
# scratch buffer (the NumPy target does this for big ones; these shapes are small)
TARGETS = ("numpy", "numpy-scratch", "c")


# The generated code runs the CODEGEN passes, which fuse some backward ops;
# each row is also checked without them, so the unfused kernels are checked too.
PIPELINES = {"codegen": CODEGEN, "pipeline": PIPELINE}


@pytest.mark.parametrize("passes", sorted(PIPELINES))
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", OPS)
def test_vjp_matches_central_differences(name, target, passes, rng, monkeypatch):
    args, attrs = ROWS[name]
    if target == "numpy-scratch":
        monkeypatch.setattr(numpy_backend, "SCRATCH_ELEMENTS", 0)
        target = "numpy"
    g = one_op_graph(name, args, attrs)
    model = sg.compile(g, target=target, dtype="float64", passes=PIPELINES[passes])
    params = {p: sample(rng, tuple(model.params[p]), REGISTRY[name].domain) for p in model.params}
    for param, (analytic, numeric) in central_difference_errors(model, params, inputs_for(model, rng), rng).items():
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (param, analytic, numeric)


# Lowered ops stand for patterns that no one-op row makes: a spec per pattern
# (their values against the textbook graph's: tests/passes/test_lower.py).
LOWERED = {"matvec": "logreg.yaml", "matmul_bias": "digits_mlp.yaml"}


def test_every_op_is_covered_by_a_gradient_row():
    """Ops with a VJP have a row; backward-only ops appear in some row's gradient graph."""
    exercised = set()
    for name, (args, attrs) in ROWS.items():
        for passes in PIPELINES.values():
            gg = optimize(differentiate(one_op_graph(name, args, attrs)), passes)
            exercised |= {gg.op(n) for n in gg.nx}
    for name, spec in LOWERED.items():
        gg = optimize(differentiate(sg.load(str(Path(__file__).resolve().parents[1] / "examples" / spec))), CODEGEN)
        assert name in {gg.op(n) for n in gg.nx}, name
        exercised.add(name)
    for name, op in REGISTRY.items():
        if differentiable(name) and not op.random:
            assert name in ROWS, f"{name} has no gradient row"
        else:
            assert name in exercised or op.random, f"no gradient row exercises {name}"
    assert "dropout_mask" in {op for op in REGISTRY if REGISTRY[op].random}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_infer_shape_matches_numpy(name, rng):
    args, attrs = ROWS[name]
    g = one_op_graph(name, args, attrs)
    model = sg.compile(g, target="numpy", dtype="float64")
    params = {p: sample(rng, tuple(model.params[p]), REGISTRY[name].domain) for p in model.params}
    out = model.forward(params, inputs_for(model, rng))["result"]
    assert np.shape(out) == tuple(int(d) for d in g.shape("result"))


# float64: the same operations in the same order up to summation order; float32: its rounding.
PARITY = {"float64": 1e-12, "float32": 1e-5}


@pytest.mark.parametrize("dtype", sorted(PARITY))
@pytest.mark.parametrize("name", OPS)
def test_c_matches_numpy(name, dtype, rng):
    args, attrs = ROWS[name]
    g = one_op_graph(name, args, attrs)
    c, numpy = sg.compile(g, target="c", dtype=dtype), sg.compile(g, target="numpy", dtype=dtype)
    params = {p: sample(rng, tuple(c.params[p]), REGISTRY[name].domain).astype(dtype) for p in c.params}
    inputs = inputs_for(c, rng)
    for key, value in numpy.init_params(3).items():
        assert_close(c.init_params(3)[key], value, PARITY[dtype])
    training = name == "dropout"  # masks must be identical, bit for bit
    loss, grads = c.loss_and_grads(params, inputs, training=training, seed=5)
    expected_loss, expected = numpy.loss_and_grads(params, inputs, training=training, seed=5)
    assert_close(loss, expected_loss, PARITY[dtype])
    for key in expected:
        assert_close(grads[key], expected[key], PARITY[dtype])
    assert_close(c.forward(params, inputs)["result"], numpy.forward(params, inputs)["result"], PARITY[dtype])


def assert_close(actual, expected, rtol: float) -> None:
    """Relative to the array's largest magnitude, so that cancellation near zero does not count."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    error = float(np.max(np.abs(actual - expected), initial=0.0))
    assert error <= rtol * scale, (error / scale, rtol)


# @ follows numpy.matmul: vectors on either side, stacks that broadcast their leading axes.
MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,)),
    ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 3)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)),
]


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("a, b", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul_of_every_rank_is_numpys(a, b, target, rng):
    g = one_op_graph("matmul", [(a, F), (b, F)], {})
    assert tuple(int(d) for d in g.shape("result")) == np.matmul(np.zeros(a), np.zeros(b)).shape
    model = sg.compile(g, target=target, dtype="float64")
    params = {p: sample(rng, tuple(model.params[p]), "real") for p in model.params}
    inputs = inputs_for(model, rng)
    np.testing.assert_allclose(model.forward(params, inputs)["result"], np.matmul(params["a0"], params["a1"]), rtol=1e-12)
    for param, (analytic, numeric) in central_difference_errors(model, params, inputs, rng).items():
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (param, analytic, numeric)
