"""Using a trained model: load_checkpoint, CompiledModel.predict, the generated
NumPy folder as a package, and both trainers' --predict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main

SPEC = """name: flowers
dims: {batch: 16, features: 4, classes: 3}
inputs:
  x: {shape: [batch, features]}
  y: {shape: [batch], dtype: int}
params:
  W: {shape: [features, classes], init: xavier_uniform}
  b: {shape: [classes], init: zeros}
graph:
  logits: x @ W + b
  loss: cross_entropy(logits, y)
loss: loss
outputs: [logits]
train: {optimizer: adam, lr: 0.05, epochs: 3, normalize: [x]}
"""


def data(folder: Path, count: int, seed: int, labels: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, count)
    x = rng.normal(size=(count, 4)) * [1, 10, 100, 0.1] + [5, -3, 40, 0] + y[:, None]
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", x)
    if labels:
        np.save(folder / "y.npy", y)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both trainers (float64) and a checkpoint of three epochs."""
    root = tmp_path_factory.mktemp("predict")
    spec = root / "flowers.yaml"
    spec.write_text(SPEC)
    trainers = {}
    for target in ("numpy", "c"):
        out = root / target
        assert main(["compile", str(spec), "--target", target, "--dtype", "float64", "-o", str(out)]) == 0
        if target == "c":
            subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O2 -Wall -Wextra -Werror"], check=True, capture_output=True)
            trainers[target] = [str(out / "train")]
        else:
            trainers[target] = [sys.executable, str(out / "train.py")]
    done = subprocess.run([*trainers["c"], "--data", data(root / "train", 100, 0), "--save", root / "ckpt"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root, spec, trainers


def test_load_checkpoint_reads_params_normalisation_and_state(trained):
    root, spec, _ = trained
    model = sg.compile(sg.load(spec), target="numpy", dtype="float64")
    found = sg.load_checkpoint(root / "ckpt", model)
    assert set(found.params) == {"W", "b"} and found.params["W"].shape == (4, 3)
    x = np.load(root / "train" / "x.npy")
    np.testing.assert_allclose(found.stats["x"][0], x.mean(axis=0)) and np.testing.assert_allclose(found.stats["x"][1], x.std(axis=0))
    assert (found.epochs, found.steps, found.seed) == (3, 21, 0)
    assert set(found.optimizer) == {"m.W", "m.b", "v.W", "v.b"}


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_predict_applies_the_normalisation_to_any_number_of_examples(trained, target, tmp_path):
    root, spec, _ = trained
    model = sg.compile(sg.load(spec), target=target, dtype="float64")
    x = np.load(data(tmp_path / "q", 37, 5, labels=False) / "x.npy")  # 37: two whole batches of 16 and a short one
    found = sg.load_checkpoint(root / "ckpt")
    expected = (x - found.stats["x"][0]) / found.stats["x"][1] @ found.params["W"] + found.params["b"]
    np.testing.assert_allclose(model.predict({"x": x}, checkpoint=root / "ckpt")["logits"], expected, rtol=1e-12)
    raw = model.predict({"x": x}, params=found.params)["logits"]  # params alone: the inputs go in as they are
    np.testing.assert_allclose(raw, x @ found.params["W"] + found.params["b"], rtol=1e-12)


def test_a_checkpoint_of_another_model_is_refused(trained, tmp_path):
    root, _, _ = trained
    other = sg.compile(sg.load(SPEC.replace("classes: 3", "classes: 4")), target="numpy")
    with pytest.raises(sg.SpecError, match="W has shape"):
        other.predict({"x": np.zeros((2, 4))}, checkpoint=root / "ckpt")
    renamed = sg.compile(sg.load(SPEC.replace("W", "V")), target="numpy")
    with pytest.raises(sg.SpecError, match="checkpoint of another model"):
        renamed.predict({"x": np.zeros((2, 4))}, checkpoint=root / "ckpt")
    with pytest.raises(sg.SpecError, match="not a checkpoint"):
        sg.load_checkpoint(root / "train")


def test_generated_numpy_folders_are_packages_that_load_side_by_side(trained, tmp_path):
    root, spec, _ = trained
    other = tmp_path / "other.yaml"
    other.write_text(SPEC.replace("name: flowers", "name: other").replace("x @ W + b", "2 * (x @ W + b)"))
    assert main(["compile", str(spec), "--dtype", "float64", "-o", str(tmp_path / "first")]) == 0
    assert main(["compile", str(other), "--dtype", "float64", "-o", str(tmp_path / "second")]) == 0
    script = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import first, second\n"
        "params, stats = first.load_checkpoint(sys.argv[2]); x = np.load(sys.argv[3])\n"
        "a, b = first.predict(params, {'x': x}, stats)['logits'], second.predict(params, {'x': x}, stats)['logits']\n"
        "assert first.model is not second.model and np.allclose(b, 2 * a); np.save(sys.argv[4], a)\n"
    )
    x = data(tmp_path / "q", 20, 3, labels=False) / "x.npy"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(root / "ckpt"), str(x), str(tmp_path / "a.npy")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    model = sg.compile(sg.load(spec), target="numpy", dtype="float64")
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), model.predict({"x": np.load(x)}, checkpoint=root / "ckpt")["logits"], rtol=1e-12)
    resumed = subprocess.run([sys.executable, "-m", "first.train", "--eval", "--init-from", str(root / "ckpt"), "--val", str(root / "train")],
                             cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0 and resumed.stdout.startswith("eval"), resumed.stderr


def test_both_trainers_predict_without_labels_alike(trained, tmp_path):
    root, spec, trainers = trained
    queries = data(tmp_path / "q", 37, 9, labels=False)
    written = {}
    for target, train in trainers.items():
        for argmax in ((), ("--argmax",)):
            out = tmp_path / f"{target}{'_argmax' if argmax else ''}.npy"
            done = subprocess.run([*train, "--init-from", root / "ckpt", "--predict", queries, "--out", out, *argmax], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            written[out.stem] = np.load(out)
    model = sg.compile(sg.load(spec), target="numpy", dtype="float64")
    expected = model.predict({"x": np.load(queries / "x.npy")}, checkpoint=root / "ckpt")["logits"]
    assert written["numpy"].shape == written["c"].shape == (37, 3) and written["c"].dtype == np.float64
    np.testing.assert_allclose(written["numpy"], expected, rtol=1e-12)
    np.testing.assert_allclose(written["c"], expected, rtol=1e-12)
    assert written["numpy_argmax"].dtype == written["c_argmax"].dtype == np.int64
    np.testing.assert_array_equal(written["numpy_argmax"], expected.argmax(axis=1))
    np.testing.assert_array_equal(written["c_argmax"], expected.argmax(axis=1))


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("case", ["no checkpoint", "not npy", "a folder", "out alone", "into the inputs", "into the checkpoint"])
def test_bad_prediction_requests_are_one_line_and_touch_nothing(trained, target, case, tmp_path):
    root, _, trainers = trained
    queries = data(tmp_path / "q", 5, 1, labels=False)
    (tmp_path / "taken.npy").mkdir()
    args = {
        "no checkpoint": ["--predict", queries, "--out", tmp_path / "p.npy"],
        "not npy": ["--init-from", root / "ckpt", "--predict", queries, "--out", tmp_path / "p.txt"],
        "a folder": ["--init-from", root / "ckpt", "--predict", queries, "--out", tmp_path / "taken.npy"],
        "out alone": ["--init-from", root / "ckpt", "--data", root / "train", "--out", tmp_path / "p.npy"],
        "into the inputs": ["--init-from", root / "ckpt", "--predict", queries, "--out", queries / "x.npy"],
        "into the checkpoint": ["--init-from", root / "ckpt", "--predict", queries, "--out", root / "ckpt" / "W.npy"],
    }[case]
    before = {p.name: p.read_bytes() for folder in (queries, root / "ckpt") for p in folder.iterdir()}
    done = subprocess.run([*trainers[target], *args], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q", "taken.npy"]
    assert {p.name: p.read_bytes() for folder in (queries, root / "ckpt") for p in folder.iterdir()} == before


REGRESSION = """name: reg
dims: {batch: 8, d: 4}
inputs: {x: {shape: [batch, d]}, t: {shape: [batch]}}
params: {w: {shape: [d]}, b: {shape: []}}
graph: {pred: x @ w + b, loss: "mse(pred, t)"}
loss: loss
outputs: [OUTPUT]
"""


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_predictions_that_cannot_be_made_are_refused(target, tmp_path):
    """--argmax of an output with no axis of classes, and more than a batch of
    examples for an output that sums a batch up (the loss)."""
    rng = np.random.default_rng(0)
    (tmp_path / "q").mkdir()
    np.save(tmp_path / "q" / "x.npy", rng.normal(size=(9, 4)))
    np.save(tmp_path / "q" / "t.npy", rng.normal(size=9))
    for output, flags, says in (("pred", ["--argmax"], "no axis of classes"), ("loss", [], "has no batch axis")):
        spec = tmp_path / f"{output}.yaml"
        spec.write_text(REGRESSION.replace("OUTPUT", output))
        out = tmp_path / f"{output}_{target}"
        assert main(["compile", str(spec), "--target", target, "-o", str(out)]) == 0
        if target == "c":
            subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O1"], check=True, capture_output=True)
        train = [str(out / "train")] if target == "c" else [sys.executable, str(out / "train.py")]
        subprocess.run([*train, "--data", tmp_path / "q", "--epochs", "1", "--save", tmp_path / f"ck_{output}_{target}"], check=True, capture_output=True)
        done = subprocess.run([*train, "--init-from", tmp_path / f"ck_{output}_{target}", "--predict", tmp_path / "q", "--out", tmp_path / "p.npy", *flags],
                              capture_output=True, text=True)
        assert done.returncode == 2 and says in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert not (tmp_path / "p.npy").exists()
    model = sg.compile(sg.load(REGRESSION.replace("OUTPUT", "loss")), target="numpy")
    with pytest.raises(ValueError, match="has no batch axis"):
        model.predict({"x": np.zeros((9, 4)), "t": np.zeros(9)}, params={"w": np.zeros(4), "b": np.zeros(())})
    with pytest.raises(ValueError, match="finite numbers"):
        model.predict({"x": np.zeros((2, 4), complex), "t": np.zeros(2)}, params={"w": np.zeros(4), "b": np.zeros(())})


@pytest.mark.parametrize("damage", ["empty file", "half a normalisation", "zero std", "nan weight", "wrong normalisation shape"])
def test_a_damaged_checkpoint_is_refused_in_one_line(trained, damage, tmp_path):
    root, spec, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(root / "ckpt", broken)
    if damage == "empty file":
        (broken / "W.npy").write_bytes(b"")
    elif damage == "half a normalisation":
        (broken / "normalize.std.x.npy").unlink()
        lines = (broken / "symgraph-checkpoint.txt").read_text().replace("normalize.std.x.npy\n", "")
        (broken / "symgraph-checkpoint.txt").write_text(lines)
    elif damage == "zero std":
        np.save(broken / "normalize.std.x.npy", np.zeros(4))
    elif damage == "nan weight":
        np.save(broken / "W.npy", np.full((4, 3), np.nan))
    else:
        np.save(broken / "normalize.mean.x.npy", np.zeros(3))
        np.save(broken / "normalize.std.x.npy", np.ones(3))
    model = sg.compile(sg.load(spec), target="numpy", dtype="float64")
    with pytest.raises(sg.SpecError) as caught:
        model.predict({"x": np.zeros((2, 4))}, checkpoint=broken)
    assert str(caught.value).count("\n") == 0 and str(broken) in str(caught.value)
    assert main(["export", str(spec), "--checkpoint", str(broken), "--embed-weights", "-o", str(tmp_path / "lib")]) == 2
    assert not (tmp_path / "lib").exists()
