"""Numerical extremes: huge, tiny and tied logits and saturated probabilities
give finite losses and finite, correct gradients in both targets and dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symgraph as sg

SPECS = {
    "cross_entropy": ("z: {shape: [4, 3]}", "y: {shape: [4], dtype: int}", "loss: cross_entropy(z, y)"),
    "binary_cross_entropy": ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", "loss: binary_cross_entropy(z, y)"),
    "softmax": ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", "loss: sum(softmax(z) * y)"),
    "log_softmax": ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", "loss: sum(log_softmax(z) * y)"),
    "sigmoid": ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", "loss: sum(sigmoid(z) * y)"),
    "tanh": ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", "loss: sum(tanh(z) * y)"),
}
# The activations and layer_norm (whose tied rows are constant rows: zero variance).
ACTIVATIONS = ("gelu", "gelu_tanh", "silu", "softplus", "elu", "leaky_relu", "erf", "layer_norm")
SPECS.update({op: ("z: {shape: [4, 3]}", "y: {shape: [4, 3]}", f"loss: sum({op}(z) * y)") for op in ACTIVATIONS})
LOGITS = {
    "huge": np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]]),
    "tied": np.full((4, 3), 7.0),
    "tiny": np.full((4, 3), 1e-30),
}


def graph(op: str) -> sg.Graph:
    z, y, loss = SPECS[op]
    # z is a param so that its gradient is checked; y holds labels or weights in [0, 1].
    return sg.load(f"name: extreme\nparams:\n  {z}\ninputs:\n  {y}\ngraph:\n  {loss}\nloss: loss\n")


def reference(op: str, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The loss and gradient worked out by hand in float64 with stable formulas."""
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    p = np.exp(log_p)
    if op == "cross_entropy":
        rows = np.arange(len(y))
        onehot = np.zeros_like(z)
        onehot[rows, y] = 1
        return -log_p[rows, y].mean(), (p - onehot) / len(y)
    if op == "binary_cross_entropy":
        s = 0.5 + 0.5 * np.tanh(0.5 * z)
        return (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean(), (s - y) / z.size
    if op == "softmax":
        return (p * y).sum(), p * (y - (p * y).sum(axis=-1, keepdims=True))
    if op == "log_softmax":
        return (log_p * y).sum(), y - p * y.sum(axis=-1, keepdims=True)
    if op == "sigmoid":
        s = 0.5 + 0.5 * np.tanh(0.5 * z)
        return (s * y).sum(), s * (1 - s) * y
    if op in ACTIVATIONS:
        value, slope = activation(op, z, y)
        return (value * y).sum(), slope
    t = np.tanh(z)
    return (t * y).sum(), (1 - t * t) * y


def activation(op: str, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The activation's value and the gradient of sum(value * y), from textbook formulas in float64."""
    erf = np.vectorize(math.erf)
    s = 0.5 + 0.5 * np.tanh(0.5 * z)
    if op == "layer_norm":
        centered = z - z.mean(axis=-1, keepdims=True)
        rstd = 1 / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-5)
        normed = centered * rstd
        return normed, rstd * (y - y.mean(axis=-1, keepdims=True) - normed * (y * normed).mean(axis=-1, keepdims=True))
    if op == "gelu":
        cdf, density = 0.5 * (1 + erf(z / math.sqrt(2))), np.exp(-0.5 * np.minimum(z * z, 1e4)) / math.sqrt(2 * math.pi)
        return z * cdf, (cdf + z * density) * y
    if op == "gelu_tanh":
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (z + 0.044715 * z**3))
        return 0.5 * z * (1 + t), (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c * (1 + 3 * 0.044715 * z * z)) * y
    if op == "silu":
        return z * s, (s + z * s * (1 - s)) * y
    if op == "softplus":
        return np.logaddexp(z, 0), s * y
    if op == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0))), np.where(z > 0, 1, np.exp(np.minimum(z, 0))) * y
    if op == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z), np.where(z > 0, 1, 0.01) * y
    return erf(z), 2 / math.sqrt(math.pi) * np.exp(-np.minimum(z * z, 1e4)) * y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("case", sorted(LOGITS))
@pytest.mark.parametrize("op", sorted(SPECS))
def test_extreme_inputs_give_finite_correct_results(op, case, target, dtype):
    model = sg.compile(graph(op), target=target, dtype=dtype)
    z = LOGITS[case]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 4) if op == "cross_entropy" else np.where(rng.random((4, 3)) < 0.5, 0.0, 1.0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow on the way either (underflow to 0 is fine)
        loss, grads = model.loss_and_grads({"z": z}, {"y": y})
    expected_loss, expected_grad = reference(op, z.astype(dtype).astype(np.float64), y)
    assert np.isfinite(loss) and np.all(np.isfinite(grads["z"]))
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    assert abs(loss - expected_loss) <= tolerance * max(1.0, abs(expected_loss))
    np.testing.assert_allclose(grads["z"], expected_grad, rtol=tolerance, atol=tolerance)


# -- NaN and infinity: both targets give the same values, NaN where NumPy has NaN ---------
from conftest import inputs_for, one_op_graph, sample  # noqa: E402
from symgraph.ops import REGISTRY  # noqa: E402
from test_gradients import OPS, ROWS  # noqa: E402


def same_values(actual, expected) -> bool:
    """The same NaN and infinities in the same places, the rest equal to float64 rounding."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return False
    finite = np.isfinite(expected)
    if not np.array_equal(np.isnan(actual), np.isnan(expected)) or not np.array_equal(actual[np.isinf(expected)], expected[np.isinf(expected)]):
        return False
    scale = max(float(np.max(np.abs(expected[finite]), initial=0.0)), 1e-300)
    return bool(np.all(np.abs(actual[finite] - expected[finite]) <= 1e-12 * scale))


@pytest.mark.parametrize("special", ["nan", "inf"])
@pytest.mark.parametrize("name", OPS)
def test_targets_agree_on_nan_and_infinity(name, special, rng):
    args, attrs = ROWS[name]
    g = one_op_graph(name, args, attrs)
    c, numpy = sg.compile(g, target="c", dtype="float64"), sg.compile(g, target="numpy", dtype="float64")
    params = {p: sample(rng, tuple(c.params[p]), REGISTRY[name].domain) for p in c.params}
    first = next(iter(params))
    for at in {min(3, params[first].size - 1), params[first].size // 2}:  # not only the first of a window or row
        params[first].flat[at] = np.nan if special == "nan" else np.inf
    inputs = inputs_for(c, rng)
    with np.errstate(all="ignore"):
        loss, grads = c.loss_and_grads(params, inputs)
        expected_loss, expected = numpy.loss_and_grads(params, inputs)
        outputs, expected_outputs = c.forward(params, inputs)["result"], numpy.forward(params, inputs)["result"]
    assert same_values(loss, expected_loss), (loss, expected_loss)
    assert same_values(outputs, expected_outputs), (outputs, expected_outputs)
    for key in expected:
        assert same_values(grads[key], expected[key]), (key, grads[key], expected[key])


# -- the activations where a careless form goes wrong ------------------------------------
def activation_model(call: str, target: str, dtype: str, shape=(5,)):
    spec = f"name: act\nparams:\n  z: {{shape: {list(shape)}}}\ninputs:\n  t: {{shape: {list(shape)}}}\ngraph:\n  out: {call}\n  loss: sum(out * t)\nloss: loss\noutputs: [out]\n"
    return sg.compile(sg.load(spec), target=target, dtype=dtype)


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("call, at_zero", [("leaky_relu(z, slope=0.2)", 0.2), ("elu(z, alpha=1.5)", 1.5), ("elu(z)", 1.0), ("relu(z)", 0.0)])
def test_the_slope_at_the_kink_is_pytorchs(call, at_zero, target):
    """At x = 0, leaky_relu's slope and elu's alpha (elu is smooth there for alpha = 1), as PyTorch's; relu's 0."""
    model = activation_model(call, target, "float64")
    _, grads = model.loss_and_grads({"z": np.array([0.0, -0.0, 1.0, -1.0, 0.0])}, {"t": np.ones(5)})
    assert grads["z"][[0, 1, 4]].tolist() == [at_zero] * 3


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_elu_is_exact_near_zero(target, dtype):
    """exp(x) - 1 as expm1: no cancellation for small x."""
    z = np.array([-1e-4, -1e-7, -1e-12, -1e-30, 1e-30])
    out = activation_model("elu(z, alpha=3.0)", target, dtype).forward({"z": z.astype(dtype)}, {"t": np.ones(5)})["out"]
    expected = np.where(z > 0, z, 3.0 * np.expm1(np.minimum(z, 0)))
    np.testing.assert_allclose(out, expected, rtol=1e-14 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_huge_attributes_stay_floats(target):
    """alpha = 1e20 is the integer 10**20 to sympy: no C integer literal that overflows."""
    z = np.array([-1e-3, -2.0, 0.5, 3.0, -30.0])
    out = activation_model("elu(z, alpha=1e20)", target, "float64").forward({"z": z}, {"t": np.ones(5)})["out"]
    np.testing.assert_allclose(out, np.where(z > 0, z, 1e20 * np.expm1(np.minimum(z, 0))), rtol=1e-14)


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_float32_layer_norm_of_huge_or_offset_rows(target):
    """Sums in float64, as the C kernel takes them: no overflow of the squares, no loss of a small spread."""
    z = np.stack([np.linspace(-3e19, 5e19, 5), 1e4 + 1e-2 * np.arange(5), np.full(5, 7.0)]).astype(np.float32)
    out = activation_model("layer_norm(z)", target, "float32", shape=(3, 5)).forward({"z": z}, {"t": np.ones((3, 5))})["out"]
    x = z.astype(np.float64)
    centered = x - x.mean(axis=-1, keepdims=True)
    expected = centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
