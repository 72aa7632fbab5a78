"""Reverse mode on composed graphs: fan-out, shared weights, broadcasting, NLP ops."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.autodiff import differentiate

ROOT = Path(__file__).resolve().parents[1]

COMPOSED = {
    "fan_out_and_shared_weights": """
dims: {batch: 3}
inputs: {x: {shape: [batch, 4]}}
params: {W: {shape: [4, 4]}, v: {shape: [4]}}
graph:
  h: tanh(x @ W)
  h2: sigmoid(h @ W) * h + v
  loss: mean(h2 * h2) + sum(exp(-h)) / 10
loss: loss
""",
    "broadcasting_and_batched_matmul": """
inputs: {x: {shape: [2, 3, 4]}}
params: {W: {shape: [4, 5]}, s: {shape: [1, 5]}, t: {shape: []}, B: {shape: [2, 5, 2]}}
graph:
  y: (x @ W) * s + t
  z: y @ B
  loss: sum(log_softmax(z, axis=-1)) + mean(softmax(y, axis=1) ** 2)
loss: loss
""",
    "embedding_with_repeated_ids": """
inputs: {tokens: {shape: [4, 3], dtype: int}, target: {shape: [4], dtype: int}}
params: {E: {shape: [3, 2]}, W: {shape: [6, 3]}}
graph:
  h: flatten(embedding(E, tokens))
  loss: cross_entropy(h @ W, target)
loss: loss
""",
    "conv_with_stride_padding_and_pooling": """
inputs: {x: {shape: [2, 9, 3]}, y: {shape: [2]}}
params: {K: {shape: [3, 3, 4]}, V: {shape: [2, 4, 2]}}
graph:
  c: relu(conv1d(x, K, stride=2, padding=2))
  p: max_pool1d(c, 2) * 0.5 + avg_pool1d(c, size=2)
  loss: binary_cross_entropy(sum(p, axis=(1, 2)), y)
loss: loss
""",
    "textcnn": (ROOT / "examples" / "textcnn.yaml").read_text(),
    "nlm": (ROOT / "examples" / "nlm.yaml").read_text(),
    "mlp_with_transpose_concat_abs_sqrt": """
dims: {batch: 5}
inputs: {x: {shape: [batch, 3]}, t: {shape: [batch, 4]}}
params: {A: {shape: [3, 2]}, B: {shape: [3, 2]}}
graph:
  u: concat(x @ A, abs(x @ B), axis=1)
  v: transpose(u) 
  loss: mse(sqrt(transpose(v) ** 2 + 1), t) + mean(max(u, axis=1))
loss: loss
""",
}

def shrink(text: str) -> str:
    """Small dims so that checking every param stays fast."""
    for big, small in (("maps: 100", "maps: 3"), ("emb: 64", "emb: 5"), ("seq: 50", "seq: 9"), ("hidden: 256", "hidden: 7"),
                       ("[300, classes]", "[9, classes]"), ("[192, hidden]", "[15, hidden]")):
        text = text.replace(big, small)
    return re.sub(r"batch: \d+", "batch: 5", re.sub(r"vocab: \d+", "vocab: 40", text))


@pytest.mark.parametrize("case", sorted(COMPOSED))
def test_composed_graph_matches_central_differences(case):
    g = sg.load(shrink(COMPOSED[case]))
    report = sg.gradcheck(g, target="numpy")
    assert report.ok, str(report)
    assert report.max_rel_error < 1e-6
    assert {r.param for r in report.rows} == set(g.params)


def test_fan_out_accumulates_with_add():
    g = sg.load("params: {a: {shape: [], value: 2}}\ngraph: {L: a * a + a}\nloss: L\n")
    assert str(sg.explain(g)) == "dL/da = 2*a + 1 = 5"


def test_nothing_is_built_for_paths_that_miss_the_loss():
    g = sg.load("""
inputs: {x: {shape: [3]}}
params: {w: {shape: [3]}, unused: {shape: [3]}}
graph:
  side: exp(unused) * x
  loss: sum(w * x)
outputs: [side]
loss: loss
""")
    gg = differentiate(g)
    assert "side" not in gg.cotangents and "unused" not in gg.cotangents
    assert gg.op(gg.gradients["unused"]) == "broadcast_to"  # a zero gradient, nothing else
    backward = set(gg.nx) - set(g.nx)
    assert not any(gg.op(n) == "exp" for n in backward)


def test_gradient_for_a_requested_input():
    g = sg.load("inputs: {x: {shape: [2]}}\nparams: {w: {shape: [2]}}\ngraph: {L: sum(w * x)}\nloss: L\n")
    gg = differentiate(g, wrt=["x", "w"])
    assert set(gg.gradients) == {"x", "w"}


def test_int_inputs_cannot_be_differentiated():
    g = sg.load("inputs: {i: {shape: [2], dtype: int}}\nparams: {E: {shape: [3, 2]}}\ngraph:\n  L: sum(embedding(E, i))\nloss: L\n")
    with pytest.raises(sg.SpecError, match="not a float input"):
        differentiate(g, wrt=["i"])


def test_compiled_model_runs_smaller_batches_than_compiled():
    g = sg.load(ROOT / "examples" / "mlp.yaml")
    model = sg.compile(g, dtype="float64")
    rng = np.random.default_rng(0)
    params = model.init_params(0)
    full = {"x": rng.standard_normal((64, 784)), "y": rng.integers(0, 10, 64)}
    part = {"x": full["x"][:5], "y": full["y"][:5]}
    loss, grads = model.loss_and_grads(params, part)
    assert np.isfinite(loss) and grads["W1"].shape == (784, 256)
    assert model.forward(params, part)["logits"].shape == (5, 10)
    with pytest.raises(ValueError, match="ids outside"):
        model.loss_and_grads(params, {"x": part["x"], "y": part["y"] + 10})
