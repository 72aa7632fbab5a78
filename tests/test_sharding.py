"""Data-parallel training rests on two facts checked here without MPI: which
losses split over examples (symgraph.sharding), and that the gradients of the
shares of a batch, weighted by their sizes, are the gradient of the whole batch,
dropout included, in both targets."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import symgraph as sg
from symgraph.codegen.program import build_program

HEAD = """\
name: split
dims: {batch: 12, d: 5, k: 4}
inputs: {x: {shape: [batch, d]}, y: {shape: [batch], dtype: int}, t: {shape: [batch, k]}}
params: {W: {shape: [d, k], init: normal(0.5)}, v: {shape: [k], init: normal(0.5)}}
graph:
"""


def spec(tmp_path, body: str, loss: str = "loss") -> sg.Graph:
    path = tmp_path / "split.yaml"
    path.write_text(HEAD + textwrap.indent(textwrap.dedent(body), "  ") + f"loss: {loss}\n")
    return sg.load(str(path))


@pytest.mark.parametrize(
    "body",
    [
        "loss: cross_entropy(x @ W, y)\n",
        "loss: mse(tanh(x @ W), t)\n",
        "loss: 3 * mean((x @ W - t) ** 2) + 0.01 * sum(W * W) - 2\n",
        "m: mean(relu(x @ W), axis=0)\nloss: sum(m * v) + mean((x @ W) * v)\n",
        "h: transpose(dropout(transpose(x @ W), 0.5))\nloss: binary_cross_entropy(h @ v, y) + mean(h)\n",
        "loss: sum(W * W)\n",
    ],
    ids=["cross_entropy", "mse", "affine", "mean_over_batch_then_sum", "dropout_batch_last", "no_data"],
)
def test_losses_that_split(tmp_path, body):
    assert build_program(spec(tmp_path, body)).coupling is None


@pytest.mark.parametrize(
    "body, why",
    [
        ("loss: sum((x @ W - t) ** 2)\n", "sums over the batch axis"),
        ("loss: cross_entropy(softmax(x @ W, axis=0), y)\n", "combines examples along the batch axis"),
        ("loss: sum(transpose(x) @ x)\n", "combines examples along the batch axis"),
        ("loss: log(mean((x @ W - t) ** 2))\n", "not affine in the mean"),
        ("loss: mean(x @ W) * mean(t)\n", "not affine in the mean"),
        ("loss: mean((x @ W) * mean(t))\n", "combines a mean over the batch with single examples"),
        ("loss: sum(max(x @ W, axis=0))\n", "combines examples along the batch axis"),
        ("z: reshape(x @ W, [48])\nloss: mean(z * z)\n", "folds the batch axis"),
    ],
    ids=["sum", "softmax_over_batch", "gram", "log_of_mean", "mean_times_mean", "mean_meets_examples", "max_over_batch", "folded"],
)
def test_losses_that_couple_examples_are_named(tmp_path, body, why):
    coupling = build_program(spec(tmp_path, body)).coupling
    assert coupling is not None and why in coupling


SHARE_SPECS = {
    "dropout_rows": "h: dropout(relu(x @ W), 0.5)\nloss: cross_entropy(h, y)\n",
    "dropout_batch_last": "h: transpose(dropout(transpose(tanh(x @ W)), 0.3))\nloss: mse(h, t) + 0.1 * sum(W * W)\n",
}


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("name", sorted(SHARE_SPECS))
def test_shares_of_a_batch_add_up_to_the_batch(tmp_path, target, name):
    """Uneven shares (one empty), weighted m_k / B: the loss and every gradient
    of the whole batch, in float64, with the same dropout masks."""
    model = sg.compile(spec(tmp_path, SHARE_SPECS[name]), target=target, dtype="float64", out_dir=tmp_path / target)
    rng = np.random.default_rng(3)
    batch = 11
    inputs = {"x": rng.normal(size=(batch, 5)), "y": rng.integers(0, 4, batch), "t": rng.normal(size=(batch, 4))}
    params = model.init_params(2)
    loss, grads = model.loss_and_grads(params, inputs, training=True, seed=99)
    cuts = [0, 4, 4, 9, 11]
    summed_loss, summed = 0.0, {k: np.zeros_like(v) for k, v in grads.items()}
    for first, stop in zip(cuts, cuts[1:]):
        if first == stop:
            continue
        share = {k: v[first:stop] for k, v in inputs.items()}
        part_loss, part = model.loss_and_grads(params, share, training=True, seed=99, first=first, total=batch)
        summed_loss += part_loss * (stop - first) / batch
        for k in summed:
            summed[k] += part[k] * (stop - first) / batch
    assert summed_loss == pytest.approx(loss, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(summed[k], grads[k], rtol=1e-10, atol=1e-13)
    # the masks do depend on the place: the share [0, 4) told it is [4, 8) differs
    moved = model.loss_and_grads(params, {k: v[:4] for k, v in inputs.items()}, training=True, seed=99, first=4, total=batch)[0]
    assert moved != model.loss_and_grads(params, {k: v[:4] for k, v in inputs.items()}, training=True, seed=99, first=0, total=batch)[0]
