"""The NumPy target's rewrites for speed: each keeps the values (float64,
against central differences and against the C target) and has the form it
promises in the generated source."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import symgraph as sg
from symgraph.codegen import numpy as numpy_backend

from pathlib import Path

from conftest import ATOL, RTOL, central_difference_errors, inputs_for
from test_gradients import assert_close

ROOT = Path(__file__).resolve().parents[1]

SPECS = {
    # sum(x * w, axis=1) is x @ w; its weight gradient sum(dz[:, None] * x, axis=0) is dz @ x
    "contraction": """
name: contraction
dims: {batch: 6}
inputs: {x: {shape: [batch, 5]}, y: {shape: [batch]}}
params: {w: {shape: [5], init: normal(0.5)}, b: {shape: [], init: zeros}}
graph:
  z: sum(x * w, axis=1) + b
  loss: binary_cross_entropy(z, y)
loss: loss
""",
    # the broadcast of dL/dm back over the rows is read by an element-wise op next to a full array
    "broadcast": """
name: broadcast
dims: {batch: 4}
inputs: {x: {shape: [batch, 3]}}
params: {W: {shape: [3, 3], init: normal(0.5)}}
graph:
  h: tanh(x @ W)
  loss: mean(h * h)
loss: loss
""",
    # small: one-line expressions; sigmoid of a sum must keep the sum together
    "sigmoid": """
name: sigmoid
dims: {batch: 4}
inputs: {x: {shape: [batch, 3]}}
params: {W: {shape: [3, 2], init: normal(0.5)}, b: {shape: [2], init: normal(0.5)}}
graph:
  h: sigmoid(x @ W + b)
  loss: mean(h * h)
loss: loss
""",
    # big enough (batch 64 x 300) for scratch buffers, in-place ufunc calls and shared window rows
    "scratch": """
name: scratch
dims: {batch: 64}
inputs: {x: {shape: [batch, 20, 15]}, y: {shape: [batch], dtype: int}}
params:
  K: {shape: [3, 15, 16], init: he_uniform}
  c: {shape: [16], init: zeros}
  W: {shape: [16, 3], init: xavier_uniform}
graph:
  f: max(sigmoid(conv1d(x, K, padding=1) + c) * 2 - 1, axis=1)
  loss: cross_entropy(f @ W, y)
loss: loss
""",
    # pooling is one pass per tap over strided slices
    "pooling": """
name: pooling
params: {x: {shape: [3, 11, 4]}, W: {shape: [8, 2]}}
graph:
  m: max_pool1d(x, size=3, stride=2)
  a: avg_pool1d(x, size=2)
  f: concat(sum(m, axis=1), sum(a, axis=1), axis=1)
  loss: sum(tanh(f @ W))
loss: loss
""",
}


def model(name: str, target: str = "numpy"):
    return sg.compile(sg.load(SPECS[name]), target=target, dtype="float64")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_match_central_differences_and_the_c_target(name):
    rng = np.random.default_rng(0)
    numpy_model, c_model = model(name), model(name, "c")
    params = numpy_model.init_params(1)
    inputs = inputs_for(numpy_model, rng)
    if "y" in inputs and name == "contraction":
        inputs["y"] = (inputs["y"] > 0).astype(np.float64)
    for param, (analytic, numeric) in central_difference_errors(numpy_model, params, inputs, rng).items():
        assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (param, analytic, numeric)
    loss, grads = numpy_model.loss_and_grads(params, inputs)
    c_loss, c_grads = c_model.loss_and_grads(params, inputs)
    assert_close(loss, c_loss, 1e-12)
    for key in grads:
        assert_close(grads[key], c_grads[key], 1e-12)


def source(name: str) -> str:
    return inspect.getsource(model(name)._backend.loss_and_grads)


def test_sums_of_products_are_matrix_vector_products():
    text = source("contraction")
    assert "z_2 = x @ w" in text and "dw = dz @ x" in text
    assert "broadcast_to" not in text and ".sum(axis=1)" not in text


def test_means_are_sums_over_the_count_with_the_same_bits():
    """ndarray.mean costs microseconds in Python: losses are written as a sum
    over the batch size n, which must give exactly what mean gives, at any n."""
    assert ".sum() / n" in source("contraction") and ".mean(" not in source("contraction")
    m = sg.compile(sg.load(SPECS["contraction"]), target="numpy", dtype="float32")
    rng = np.random.default_rng(3)
    params = m.init_params(1)
    for n in (6, 5):
        x, y = rng.standard_normal((n, 5)).astype(np.float32), (rng.random(n) > 0.5).astype(np.float32)
        z = x @ params["w"] + params["b"]
        loss, _ = m.loss_and_grads(params, {"x": x, "y": y})
        assert loss == float((np.logaddexp(0, z) - z * y).mean())


def test_broadcasts_that_meet_a_full_array_are_left_to_numpy():
    text = source("broadcast")
    assert "np.broadcast_to" not in text and "[None, None]" in text  # mean's gradient, 1/(3n), broadcast by h


def test_big_intermediates_go_to_scratch_buffers_and_results_stay_fresh():
    m = model("scratch")
    text = inspect.getsource(m._backend.loss_and_grads)
    assert "f_1 = scratch(" in text and "np.tanh(" in text and ", out=" in text
    assert text.count("window_rows(x, 3, 1, 1") == 1  # the kernel gradient reuses the forward's rows
    rng = np.random.default_rng(1)
    params, inputs = m.init_params(1), inputs_for(m, rng)
    first_loss, first = m.loss_and_grads(params, inputs)
    kept = {k: v.copy() for k, v in first.items()}
    m.loss_and_grads({k: v * 0.5 for k, v in params.items()}, inputs_for(m, rng))  # reuses every scratch buffer
    for key in first:  # nothing the first call returned was overwritten
        np.testing.assert_array_equal(first[key], kept[key], err_msg=key)
    assert m.loss_and_grads(params, inputs)[0] == first_loss


@pytest.mark.parametrize("example", ["mlp", "nlm", "textcnn", "transformer", "digits_cnn"])
def test_scratch_buffers_are_shared_where_lifetimes_allow_and_change_no_number(example, monkeypatch):
    """Every array that can goes to a scratch buffer (SCRATCH_ELEMENTS = 0):
    the memory plan shares them by lifetime, which must change no loss or
    gradient against fresh arrays, in two calls running over the same
    buffers, and needs fewer buffers than arrays."""
    g = sg.load(ROOT / "examples" / f"{example}.yaml")
    g.dims["batch"] = 4
    rng = np.random.default_rng(5)
    fresh = sg.compile(g, target="numpy", dtype="float64")
    monkeypatch.setattr(numpy_backend, "SCRATCH_ELEMENTS", 0)
    shared = sg.compile(g, target="numpy", dtype="float64")
    text = inspect.getsource(shared._backend.loss_and_grads)
    numbers = set(re.findall(r"scratch\((\d+),", text))
    arrays = re.findall(r"^    (\w+) = (?:np\.\w+\(.*out=)?scratch\(\d+,", text, re.M)
    assert 1 < len(numbers) < len(arrays), (numbers, arrays)
    params = fresh.init_params(3)
    for _ in range(2):
        inputs = inputs_for(fresh, rng)
        loss, grads = fresh.loss_and_grads(params, inputs)
        other_loss, other = shared.loss_and_grads(params, inputs)
        assert abs(loss - other_loss) <= 1e-12 * abs(loss)
        for name in grads:
            np.testing.assert_allclose(other[name], grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("scratch_elements", [None, 0])
def test_sgd_step_updates_every_param_in_place(scratch_elements, monkeypatch):
    """0-d params are written by item assignment, big ones through a scratch
    buffer, the rest by -=: each array ends at params - lr * grads, and stays
    the caller's array. A param given as a plain number is replaced."""
    if scratch_elements is not None:  # every param then counts as big
        monkeypatch.setattr(numpy_backend, "SCRATCH_ELEMENTS", scratch_elements)
    m = model("contraction")
    rng = np.random.default_rng(2)
    params = m.init_params(1)
    params["w"] = rng.standard_normal(5)
    _, grads = m.loss_and_grads(params, inputs_for(m, rng))
    expected = {k: v - 0.3 * grads[k] for k, v in params.items()}
    arrays = dict(params)
    m._backend.sgd_step(params, grads, 0.3)
    for key, value in expected.items():
        assert params[key] is arrays[key] and params[key].shape == value.shape, key
        np.testing.assert_array_equal(params[key], value, err_msg=key)
    params["b"] = 1.25  # a plain number: not an array to write into
    m._backend.sgd_step(params, grads, 0.3)
    assert params["b"] == 1.25 - 0.3 * grads["b"]


def test_scratch_memory_stays_bounded_whatever_the_batch_sizes(tmp_path):
    """Scratch buffers were kept per shape: 481 batch sizes added 2 GiB. Now
    one per array, as large as its largest use: a full batch's worth."""
    g = sg.load(ROOT / "examples" / "mlp.yaml")
    model = sg.compile(g, target="numpy", dtype="float32", out_dir=tmp_path / "out")
    store = model._backend._SCRATCH
    params = model.init_params(0)
    rng = np.random.default_rng(0)

    def held() -> int:
        arrays = [v if isinstance(v, np.ndarray) else v[0] for v in vars(store).values()]
        return sum(a.nbytes for a in arrays)

    def step(n: int) -> None:
        model.loss_and_grads(params, {"x": rng.standard_normal((n, 784)), "y": rng.integers(0, 10, n)})

    step(64)
    full = held()
    for n in range(1, 64):
        step(n)
    assert 0 < held() <= full


def test_the_batch_size_and_scratch_are_defined_exactly_where_the_code_reads_them():
    """What a function reads of the module is recorded as its lines are written,
    not searched for afterwards: checked here against the text, over the examples
    and generated specs (broadcasts left to NumPy, fused losses, shared conv rows)."""
    import re
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from differential import generate

    from symgraph.codegen import build_program, render

    texts = [p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))] + [generate(seed).text for seed in range(50000, 50040)]
    for text in texts:
        source = render(build_program(sg.load(text), "float64"), "numpy")["model.py"]
        for function in ("forward", "evaluate", "loss_and_grads"):
            body = source.split(f"\ndef {function}(", 1)[1].split("\ndef ", 1)[0]
            lines = [line.split("#", 1)[0] for line in body.splitlines()[1:]]
            defines = any(re.match(r"\s+n = ", line) for line in lines)
            reads = any(re.search(r"\bn\b", line) for line in lines if not re.match(r"\s+n = ", line) and not line.strip().startswith(("return", '"')))
            assert defines == reads, (function, text)
        assert ("def scratch(" in source) == bool(re.search(r"\bscratch\(\"", source)), text


def test_forward_returns_arrays_of_its_own():
    """A trial found forward's results were views: of the caller's input (an
    output transpose(x)) and of each other (h and transpose(h))."""
    spec = """
name: views
dims: {batch: 3, d: 2}
inputs: {x: {shape: [batch, d]}}
params: {W: {shape: [d, d]}}
graph: {xt: transpose(x), h: x @ W, ht: transpose(h), loss: sum(h * h)}
outputs: [xt, h, ht, h]
loss: loss
"""
    g = sg.load(spec)
    for target in ("numpy", "c"):
        m = sg.compile(g, target=target, dtype="float64")
        x = np.arange(6.0).reshape(3, 2)
        kept = x.copy()
        out = m.forward(m.init_params(0), {"x": x})
        for name, value in out.items():
            value[...] = -1
        np.testing.assert_array_equal(x, kept, err_msg=target)
        again = m.forward(m.init_params(0), {"x": x})
        assert not any(np.shares_memory(a, b) for a in again.values() for b in again.values() if a is not b), target
        assert not any(np.shares_memory(a, x) for a in again.values()), target
