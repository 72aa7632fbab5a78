"""conv2d and the 2-D pools against direct loops in float64, over strides,
paddings (down to windows that meet no pixel), kernels wider than tall and
images taller than wide, in both targets; the gradients of x and K too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import symgraph as sg

# (batch, height, width, c_in, c_out, kh, kw, stride, padding)
CONVS = [
    (2, 5, 4, 3, 2, 3, 2, 1, 0),
    (3, 7, 6, 2, 4, 3, 3, 2, 1),
    (1, 6, 9, 1, 3, 2, 4, 3, 2),
    (2, 4, 4, 3, 5, 3, 3, 1, 3),  # padding as wide as the kernel: corner windows meet no pixel
    (5, 3, 3, 4, 2, 3, 3, 1, 1),
    (2, 9, 8, 2, 3, 1, 1, 2, 0),
]


def direct_conv(x, k, stride, padding):
    """y[b, i, j, o] = sum_{u, v, c} xpad[b, i*stride + u, j*stride + v, c] K[u, v, c, o], loop by loop."""
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    kh, kw = k.shape[:2]
    out_h, out_w = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, k.shape[3]))
    for i, j in itertools.product(range(out_h), range(out_w)):
        window = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
        y[:, i, j, :] = np.einsum("buvc,uvco->bo", window, k)
    return y


def conv_model(target, case):
    b, h, w, c, o, kh, kw, stride, padding = case
    spec = f"""
name: conv
params:
  x: {{shape: [{b}, {h}, {w}, {c}]}}
  K: {{shape: [{kh}, {kw}, {c}, {o}]}}
inputs:
  t: {{shape: [{b}, {(h + 2 * padding - kh) // stride + 1}, {(w + 2 * padding - kw) // stride + 1}, {o}]}}
graph:
  y: conv2d(x, K, stride={stride}, padding={padding})
  loss: sum(y * t)
loss: loss
outputs: [y]
"""
    return sg.compile(sg.load(spec), target=target, dtype="float64")


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("case", CONVS, ids=[f"{c[1]}x{c[2]}-k{c[5]}x{c[6]}-s{c[7]}-p{c[8]}" for c in CONVS])
def test_conv2d_and_its_gradients_are_the_direct_sums(case, target, rng):
    model = conv_model(target, case)
    params = {name: rng.standard_normal(tuple(shape)) for name, shape in model.params.items()}
    stride, padding = case[7], case[8]
    y = direct_conv(params["x"], params["K"], stride, padding)
    t = rng.standard_normal(y.shape)
    np.testing.assert_allclose(model.forward(params, {"t": t})["y"], y, rtol=1e-12, atol=1e-12)
    loss, grads = model.loss_and_grads(params, {"t": t})
    assert loss == pytest.approx(float((y * t).sum()), rel=1e-12)
    # y is linear in x and in K: each gradient element is the loss of a unit array in its place
    for name in ("x", "K"):
        expected = np.zeros_like(params[name])
        for index in np.ndindex(params[name].shape):
            unit = np.zeros_like(params[name])
            unit[index] = 1.0
            x, k = (unit, params["K"]) if name == "x" else (params["x"], unit)
            expected[index] = (direct_conv(x, k, stride, padding) * t).sum()
        np.testing.assert_allclose(grads[name], expected, rtol=1e-10, atol=1e-10)


# (batch, height, width, channels, size, stride)
POOLS = [(2, 5, 7, 3, 3, 2), (3, 4, 4, 2, 2, 2), (1, 6, 5, 1, 2, 1), (2, 3, 3, 4, 3, 3)]


def direct_pool(x, size, stride, reduce):
    out_h, out_w = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
    y = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i, j in itertools.product(range(out_h), range(out_w)):
        y[:, i, j, :] = reduce(x[:, i * stride : i * stride + size, j * stride : j * stride + size, :], axis=(1, 2))
    return y


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOLS, ids=[f"{c[1]}x{c[2]}-size{c[4]}-s{c[5]}" for c in POOLS])
def test_pools_and_their_gradients_are_the_direct_ones(case, kind, target, rng):
    b, h, w, c, size, stride = case
    out_shape = (b, (h - size) // stride + 1, (w - size) // stride + 1, c)
    spec = f"""
name: pool
params: {{x: {{shape: [{b}, {h}, {w}, {c}]}}}}
inputs: {{t: {{shape: [{", ".join(map(str, out_shape))}]}}}}
graph:
  y: {kind}_pool2d(x, {size}, stride={stride})
  loss: sum(y * t)
loss: loss
outputs: [y]
"""
    model = sg.compile(sg.load(spec), target=target, dtype="float64")
    x = rng.permutation(np.arange(b * h * w * c, dtype=np.float64)).reshape(b, h, w, c)  # no ties: one maximum per window
    t = rng.standard_normal(out_shape)
    reduce = np.max if kind == "max" else np.mean
    y = direct_pool(x, size, stride, reduce)
    np.testing.assert_allclose(model.forward({"x": x}, {"t": t})["y"], y, rtol=1e-12)
    _, grads = model.loss_and_grads({"x": x}, {"t": t})
    expected = np.zeros_like(x)
    for i, j in itertools.product(range(out_shape[1]), range(out_shape[2])):
        window = x[:, i * stride : i * stride + size, j * stride : j * stride + size, :]
        if kind == "max":
            share = window == window.max(axis=(1, 2), keepdims=True)
        else:
            share = np.full(window.shape, 1.0 / size**2)
        expected[:, i * stride : i * stride + size, j * stride : j * stride + size, :] += share * t[:, i : i + 1, j : j + 1, :]
    np.testing.assert_allclose(grads["x"], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_max_pool2d_sends_a_tie_to_the_first_maximum_in_row_major_order(target):
    spec = """
name: ties
params: {x: {shape: [1, 2, 2, 1]}}
graph:
  loss: sum(max_pool2d(x, 2))
loss: loss
"""
    model = sg.compile(sg.load(spec), target=target, dtype="float64")
    _, grads = model.loss_and_grads({"x": np.array([[[[1.0], [3.0]], [[3.0], [2.0]]]])}, {})
    assert grads["x"].ravel().tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_layer_norm_is_exact_on_constant_rows_and_matches_the_formula(target, axis, rng):
    spec = f"""
name: norm
params: {{x: {{shape: [3, 4, 5]}}}}
inputs: {{t: {{shape: [3, 4, 5]}}}}
graph:
  y: layer_norm(x, axis={axis}, eps=0.001)
  loss: sum(y * t)
loss: loss
outputs: [y]
"""
    model = sg.compile(sg.load(spec), target=target, dtype="float64")
    x, t = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    constant = [slice(None)] * 3
    constant[(axis + 1) % 3] = 1
    x[tuple(constant)] = 2.5  # rows along the axis that are constant: zero variance, y = 0 exactly
    centered = x - x.mean(axis=axis, keepdims=True)
    y = centered / np.sqrt((centered**2).mean(axis=axis, keepdims=True) + 0.001)
    got = model.forward({"x": x}, {"t": t})["y"]
    np.testing.assert_allclose(got, y, rtol=1e-12, atol=1e-12)
    assert np.all(got[tuple(constant)] == 0)
    _, grads = model.loss_and_grads({"x": x}, {"t": t})
    rstd = 1 / np.sqrt((centered**2).mean(axis=axis, keepdims=True) + 0.001)
    expected = rstd * (t - t.mean(axis=axis, keepdims=True) - y * (t * y).mean(axis=axis, keepdims=True))
    np.testing.assert_allclose(grads["x"], expected, rtol=1e-10, atol=1e-12)
