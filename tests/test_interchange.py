"""ONNX export against the generated NumPy forward, and safetensors checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main
from symgraph.codegen.program import int_bound

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-4, 1e-5
RUN_BATCH = 3  # examples per ONNX run: fewer than every spec's dims.batch, to exercise the symbolic batch axis

REGRESSION = """
name: regression
dims: {batch: 16, features: 4}
inputs:
  x: {shape: [batch, features]}
  y: {shape: [batch]}
params:
  w: {shape: [features]}
  b: {shape: [], init: zeros}
graph:
  pred: x @ w + b
  loss: mse(pred, y)
loss: loss
train: {optimizer: adam, lr: 0.05, batch_size: 8, epochs: 1, seed: 0, normalize: [x]}
"""

# embedding, conv1d with stride and padding, both pools, a batched matmul, every
# element-wise op, softmax, log-softmax, reductions over several axes, the batch
# size as a number, and dropout (gone in evaluation)
SEQUENCE = """
name: sequence
dims: {batch: 8, seq: 12, vocab: 20, emb: 6, maps: 5}
inputs:
  tokens: {shape: [batch, seq], dtype: int}
  x: {shape: [batch, 4]}
  label: {shape: [batch], dtype: int}
params:
  E: {shape: [vocab, emb]}
  K: {shape: [3, emb, maps]}
  c: {shape: [maps]}
  V: {shape: [4, 3]}
  W: {shape: [23, 3]}
graph:
  words: embedding(E, tokens)
  conv: relu(conv1d(words, K, stride=2, padding=1) + c)
  pooled: max_pool1d(conv, 2)
  averaged: avg_pool1d(words, 3, stride=2)
  pairs: transpose(pooled, axes=[0, 2, 1]) @ pooled
  corner: reshape(max(pairs, axis=[1, 2], keepdims=True), [batch, 1])
  spread: reshape(sum(tanh(averaged), axis=[1, 2]), [batch, 1])
  features: dropout(concat(flatten(pooled), mean(averaged, axis=1), corner, spread, axis=1), p=0.3)
  dense: x @ V
  shaped: sigmoid(dense) + exp(-dense) / 4 + log(1 + dense * dense) + sqrt(abs(dense) + 1) + step(dense) - sign(dense) + dense ** 3
  scores: features @ W + shaped
  probs: softmax(scores, axis=-1)
  logp: log_softmax(scores)
  total: sum(probs) / batch
  loss: cross_entropy(scores, label)
loss: loss
outputs: [scores, probs, logp, total]
"""

# A loss-only spec: the export's output is the loss, cross-entropies included.
LOSSES = """
name: losses
dims: {batch: 8, features: 5, classes: 4}
inputs:
  x: {shape: [batch, features]}
  label: {shape: [batch], dtype: int}
  hit: {shape: [batch], dtype: int}
  flag: {shape: [batch]}
params:
  W: {shape: [features, classes]}
  v: {shape: [features]}
graph:
  logits: x @ W
  z: x @ v
  loss: cross_entropy(logits, label) + binary_cross_entropy(z, hit) + binary_cross_entropy(2 * z, flag)
loss: loss
"""

# reshape(x, [-1]) folds the batch axis into another: the model takes whole batches only
FOLDED = """
name: folded
dims: {batch: 4, features: 3}
inputs:
  x: {shape: [batch, features]}
params:
  w: {shape: [12, 2]}
graph:
  out: reshape(reshape(x, [-1]), [1, 12]) @ w
  loss: sum(out)
loss: loss
outputs: [out]
"""

# conv2d with stride and padding, both 2-D pools, layer norm along a middle
# axis, and the activations exported from their expressions (gelu and
# gelu_tanh of one tensor trip a fusion of onnxruntime's graph optimiser,
# which then drops a node it shares: hence conv * 2)
IMAGES = """
name: images
dims: {batch: 6, side: 7, classes: 3}
inputs:
  img: {shape: [batch, side, side, 2]}
  label: {shape: [batch], dtype: int}
params:
  K: {shape: [3, 2, 2, 4]}
  W: {shape: [32, classes]}
graph:
  conv: conv2d(img, K, stride=2, padding=1)
  act: gelu(conv) + gelu_tanh(conv * 2) + silu(conv) + softplus(conv) + elu(conv, alpha=0.5) + leaky_relu(conv, slope=0.1) + erf(conv)
  pooled: max_pool2d(layer_norm(act, axis=2), 2)
  features: reshape(concat(pooled, avg_pool2d(act, 3, stride=1), axis=2), [batch, 32])
  logits: features @ W
  loss: cross_entropy(logits, label)
loss: loss
outputs: [logits]
"""

EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml"))
SPECS = {name: (ROOT / "examples" / name).read_text() for name in EXAMPLES}
SPECS.update(images=IMAGES, regression=REGRESSION, sequence=SEQUENCE, losses=LOSSES, folded=FOLDED)


def random_params(model, rng) -> dict:
    """The spec's initial values, shifted off zero so that biases count too."""
    return {k: v + 0.1 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.init_params(0).items()}


def random_inputs(g, session, rng) -> dict:
    """Inputs for every graph input of the ONNX model, at RUN_BATCH examples where the batch is free."""
    feeds = {}
    for leaf in session.get_inputs():
        shape = [RUN_BATCH if isinstance(d, str) else d for d in leaf.shape]
        if leaf.type == "tensor(int64)":
            feeds[leaf.name] = rng.integers(0, int_bound(g, leaf.name), shape)
        else:
            feeds[leaf.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def session_for(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def random_stats(g, rng) -> dict:
    """A mean and std for each input the spec's train.normalize lists."""
    stats = {}
    for name in g.train.get("normalize", []):
        example = tuple(int(d) for d in g.shape(name)[1:])
        stats[name] = (rng.standard_normal(example).astype(np.float32), rng.uniform(0.5, 2.0, example).astype(np.float32))
    return stats


@pytest.mark.parametrize("name", list(SPECS))
def test_onnx_export_computes_what_the_numpy_forward_computes(name):
    onnx = pytest.importorskip("onnx")
    from symgraph.interchange import export_onnx

    rng = np.random.default_rng(0)
    g = sg.load(SPECS[name])
    model = sg.compile(g, target="numpy")
    params = random_params(model, rng)
    stats = random_stats(g, rng)  # diabetes, logreg and regression standardise x
    exported = export_onnx(g, params, stats)
    onnx.checker.check_model(exported, full_check=True)
    session = session_for(exported)
    raw = random_inputs(g, session, rng)
    standardized = {k: (v - stats[k][0]) / stats[k][1] if k in stats else v for k, v in raw.items()}
    want = model.forward(params, standardized)
    got = dict(zip((o.name for o in session.get_outputs()), session.run(None, raw)))
    assert sorted(got) == sorted(want) == sorted(g.outputs or [g.loss])
    largest = 0.0
    for key, value in want.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, err_msg=key)
        largest = max(largest, float(np.max(np.abs(got[key] - value), initial=0.0)))
    print(f"{name}: largest |onnxruntime - numpy| = {largest:.3g}")


def test_onnx_inputs_are_those_the_outputs_read_with_a_symbolic_batch():
    pytest.importorskip("onnx")
    from symgraph.interchange import export_onnx

    g = sg.load(SEQUENCE)
    exported = export_onnx(g, random_params(sg.compile(g), np.random.default_rng(0)))
    inputs = {i.name: i for i in exported.graph.input}
    assert sorted(inputs) == ["tokens", "x"]  # no labels
    assert inputs["tokens"].type.tensor_type.elem_type == 7  # int64
    assert [d.dim_param or d.dim_value for d in inputs["tokens"].type.tensor_type.shape.dim] == ["batch", 12]
    assert sorted(i.name for i in exported.graph.initializer if not i.name.startswith("sg_")) == ["E", "K", "V", "W", "c"]
    folded = export_onnx(sg.load(FOLDED), {"w": np.zeros((12, 2))})
    assert [d.dim_value for d in folded.graph.input[0].type.tensor_type.shape.dim] == [4, 3]


def test_save_onnx_writes_a_new_file_only(tmp_path):
    onnx = pytest.importorskip("onnx")
    from symgraph.interchange import save_onnx

    g = sg.load(REGRESSION)
    params = {"w": np.ones(4), "b": np.zeros(())}
    path = save_onnx(g, params, tmp_path / "model.onnx")
    assert onnx.load(path).graph.output[0].name == "loss"
    assert save_onnx(g, params, path) == path  # its own export may be replaced
    foreign = tmp_path / "notes.onnx"
    foreign.write_text("mine")
    with pytest.raises(sg.SpecError, match="already exists and is not a file symgraph wrote"):
        save_onnx(g, params, foreign)
    assert foreign.read_text() == "mine"


def test_onnx_export_refuses_what_it_cannot_express():
    pytest.importorskip("onnx")
    from symgraph.interchange import export_onnx

    g = sg.load(REGRESSION)
    with pytest.raises(sg.SpecError, match="no value given") as missing:
        export_onnx(g, {"w": np.ones(4)})
    assert missing.value.node == "b"
    with pytest.raises(sg.SpecError, match="shape"):
        export_onnx(g, {"w": np.ones(3), "b": np.zeros(())})
    params = {"w": np.ones(4), "b": np.zeros(())}
    with pytest.raises(sg.SpecError, match="arrays of one example's shape"):
        export_onnx(g, params, {"x": (np.zeros(3), np.ones(3))})
    with pytest.raises(sg.SpecError, match="not a float input"):
        export_onnx(g, params, {"w": (np.zeros(4), np.ones(4))})
    # a gradient graph's own ops (here the one-hot rows of cross-entropy's gradient) have no ONNX form
    nlm = sg.load(SPECS["nlm.yaml"])
    grads = sg.differentiate(nlm)
    grads.outputs = [grads.gradients["C"]]
    with pytest.raises(sg.SpecError, match="op 'onehot' has no ONNX form") as unsupported:
        export_onnx(grads, random_params(sg.compile(nlm), np.random.default_rng(0)))
    assert unsupported.value.node in grads.nx


# -- safetensors -----------------------------------------------------------------------
def trainer(tmp_path: Path) -> list[str]:
    spec = tmp_path / "regression.yaml"
    spec.write_text(REGRESSION)
    assert main(["compile", str(spec), "-o", str(tmp_path / "trainer"), "--target", "numpy"]) == 0
    return [sys.executable, str(tmp_path / "trainer" / "train.py")]


def run(train: list[str], *args) -> subprocess.CompletedProcess:
    return subprocess.run([*train, *map(str, args)], capture_output=True, text=True)


def regression_data(folder: Path) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir()
    x = rng.normal(3.0, 2.0, (40, 4)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 1).astype(np.float32))
    return folder


def test_safetensors_round_trip_gives_a_checkpoint_the_trainer_resumes_from(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    from symgraph.interchange import checkpoint_to_safetensors, safetensors_to_checkpoint

    train = trainer(tmp_path)
    data = regression_data(tmp_path / "data")
    trained = run(train, "--data", data, "--epochs", "1", "--save", tmp_path / "ckpt")
    assert trained.returncode == 0, trained.stderr
    path = checkpoint_to_safetensors(tmp_path / "ckpt", tmp_path / "model.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        assert sorted(handle.keys()) == ["b", "normalize.mean.x", "normalize.std.x", "w"]
        metadata = handle.metadata()
    assert metadata["model"] == "regression" and json.loads(metadata["params"]) == {"w": [4], "b": []}
    back = safetensors_to_checkpoint(path, tmp_path / "back")
    for name in ("w", "b", "normalize.mean.x", "normalize.std.x"):
        original, converted = np.load(tmp_path / "ckpt" / f"{name}.npy"), np.load(back / f"{name}.npy")
        assert converted.dtype == original.dtype and converted.shape == original.shape
        assert np.array_equal(converted, original), name
    listed = (back / "symgraph-checkpoint.txt").read_text().splitlines()
    assert sorted(line for line in listed if not line.startswith("#")) == sorted(p.name for p in back.glob("*.npy"))
    # the same params and normalisation evaluate to the same loss, and training resumes from them
    evaluated = [run(train, "--data", data, "--eval", "--init-from", ckpt) for ckpt in (tmp_path / "ckpt", back)]
    assert evaluated[0].returncode == 0 and evaluated[0].stdout == evaluated[1].stdout, evaluated[1].stderr
    resumed = run(train, "--data", data, "--epochs", "1", "--init-from", back, "--save", back)
    assert resumed.returncode == 0, resumed.stderr


def test_safetensors_conversion_refuses_bad_paths(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    from symgraph.interchange import checkpoint_to_safetensors, safetensors_to_checkpoint

    with pytest.raises(sg.SpecError, match="not a folder"):
        checkpoint_to_safetensors(tmp_path / "missing", tmp_path / "out.safetensors")
    (tmp_path / "plain").mkdir()
    np.save(tmp_path / "plain" / "w.npy", np.ones(3))
    with pytest.raises(sg.SpecError, match="not a checkpoint"):
        checkpoint_to_safetensors(tmp_path / "plain", tmp_path / "out.safetensors")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "symgraph-checkpoint.txt").write_text("w.npy\nb.npy\n")
    np.save(ckpt / "w.npy", np.ones(3))
    with pytest.raises(sg.SpecError, match="missing"):
        checkpoint_to_safetensors(ckpt, tmp_path / "out.safetensors")
    np.save(ckpt / "b.npy", np.zeros(()))
    with pytest.raises(sg.SpecError, match="already exists"):
        checkpoint_to_safetensors(ckpt, tmp_path / "plain")
    path = checkpoint_to_safetensors(ckpt, tmp_path / "out.safetensors")
    with pytest.raises(sg.SpecError, match="already exists"):
        safetensors_to_checkpoint(path, tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["w.npy"]  # untouched
    with pytest.raises(sg.SpecError, match="folder does not exist"):
        safetensors_to_checkpoint(path, tmp_path / "nowhere" / "ckpt")
    with pytest.raises(sg.SpecError, match="no such file"):
        safetensors_to_checkpoint(tmp_path / "missing.safetensors", tmp_path / "new")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(sg.SpecError, match="cannot be read"):
        safetensors_to_checkpoint(tmp_path / "junk.safetensors", tmp_path / "new")
    save_file({"optimizer.m.w": np.ones(3)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(sg.SpecError, match="not a parameter"):
        safetensors_to_checkpoint(tmp_path / "foreign.safetensors", tmp_path / "new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob("new.tmp.*"))
