"""The metric next to the validation loss: chosen from the loss or by the spec,
computed alike by both trainers, and equal to the formula on the checkpoint."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main

REGRESSION = """name: reg
dims: {{batch: 8, d: 3, k: 2}}
inputs:
  x: {{shape: [batch, d]}}
  t: {{shape: [batch, k]}}
params:
  W: {{shape: [d, k], init: xavier_uniform}}
  c: {{shape: [k], init: zeros}}
graph:
  pred: x @ W + c
  L: {loss}
loss: L
outputs: [pred]
{train}"""


def trainer(spec: Path, target: str, out: Path) -> list[str]:
    assert main(["compile", str(spec), "--target", target, "--dtype", "float64", "-o", str(out)]) == 0
    if target == "numpy":
        return [sys.executable, str(out / "train.py")]
    subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O1"], check=True, capture_output=True)
    return [str(out / "train")]


def regression_data(folder: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 3))
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "t.npy", x @ np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]]) + 0.1 * rng.normal(size=(count, 2)))
    return folder


@pytest.mark.needs_cc
@pytest.mark.parametrize("metric", ["mse", "rmse", "mae", None])
def test_error_metrics_agree_between_targets_and_with_the_checkpoint(metric, tmp_path):
    spec = tmp_path / "reg.yaml"
    spec.write_text(REGRESSION.format(loss="mse(pred, t)", train=f"train: {{metric: {metric}, lr: 0.05}}\n" if metric else ""))
    data, val = regression_data(tmp_path / "train", 40, 0), regression_data(tmp_path / "val", 21, 1)  # 21: a last short batch
    shown = metric or "rmse"  # the default for an mse loss
    lines, logs = {}, {}
    for target in ("numpy", "c"):
        train = trainer(spec, target, tmp_path / target)
        log = tmp_path / f"{target}.csv"
        done = subprocess.run([*train, "--data", data, "--val", val, "--epochs", "3", "--save", tmp_path / f"ckpt_{target}", "--log", log],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        lines[target] = [line.rsplit("  ", 1)[0] for line in done.stdout.splitlines()]
        logs[target] = [row.rsplit(",", 1)[0] for row in log.read_text().splitlines()]
        assert f"val {shown} " in lines[target][-1]
        assert logs[target][0] == f"epoch,train_loss,val_loss,val_{shown},lr,grad_norm"
    assert lines["numpy"] == lines["c"] and logs["numpy"] == logs["c"]

    params = {name: np.load(tmp_path / "ckpt_c" / f"{name}.npy") for name in ("W", "c")}
    x, t = np.load(val / "x.npy"), np.load(val / "t.npy")
    error = x @ params["W"] + params["c"] - t
    expected = {"mse": np.mean(error**2), "rmse": math.sqrt(np.mean(error**2)), "mae": np.mean(np.abs(error))}[shown]
    assert float(lines["c"][-1].split(f"val {shown}")[1].split()[0]) == pytest.approx(expected, abs=6e-5)
    evaluated = subprocess.run([*trainer(spec, "numpy", tmp_path / "numpy"), "--eval", "--val", val, "--init-from", tmp_path / "ckpt_c"],
                               capture_output=True, text=True)
    assert evaluated.returncode == 0 and evaluated.stdout.split()[3:5] == [shown, f"{expected:.4f}"], evaluated


def test_an_mse_written_by_hand_counts_as_one():
    g = sg.load(REGRESSION.format(loss="mean((pred - t) ** 2)", train=""))
    assert sg.compile(g, target="numpy").program.metric == "rmse"


@pytest.mark.parametrize(
    "loss, metric, says",
    [("mse(pred, t)", "accuracy", "needs a cross-entropy loss on a label input"),
     ("mse(pred, t)", "perplexity", "needs a cross_entropy loss"),
     ("sum(abs(pred - t))", "mae", "needs an mse loss"),
     ("mse(pred, t)", "r2", "metric must be one of accuracy, perplexity, mse, rmse, mae")],
)
def test_a_metric_the_loss_cannot_give_is_refused(loss, metric, says, tmp_path, capsys):
    spec = tmp_path / "reg.yaml"
    spec.write_text(REGRESSION.format(loss=loss, train=f"train: {{metric: {metric}}}\n"))
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1, err


def test_a_loss_without_a_metric_reports_the_loss_alone():
    g = sg.load(REGRESSION.format(loss="sum(abs(pred - t))", train=""))
    assert sg.compile(g, target="numpy").program.metric is None


def test_mse_of_different_shapes_is_refused(tmp_path, capsys):
    """[batch, 1] against [batch] broadcast to [batch, batch]: every prediction against every target."""
    spec = tmp_path / "reg.yaml"
    spec.write_text(REGRESSION.format(loss="mse(sum(pred, axis=1, keepdims=True), sum(t, axis=1))", train=""))
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "differ in shape" in err and err.count("\n") == 1, err


def test_a_loss_with_a_penalty_keeps_its_metric():
    penalised = sg.load(REGRESSION.format(loss="mse(pred, t) + 0.01 * sum(W * W)", train=""))
    assert sg.compile(penalised, target="numpy").program.metric == "rmse"
    classifier = sg.load("dims: {batch: 4}\ninputs: {x: {shape: [batch, 3]}, y: {shape: [batch], dtype: int}}\n"
                         "params: {W: {shape: [3, 2]}}\ngraph: {z: x @ W, loss: 'cross_entropy(z, y) + 0.1 * mean(W * W)'}\nloss: loss\n")
    assert sg.compile(classifier, target="numpy").program.metric == "accuracy"


@pytest.mark.needs_cc
@pytest.mark.parametrize("target", ["numpy", "c"])
def test_the_regression_target_is_never_standardised(target, tmp_path, capsys):
    spec = tmp_path / "reg.yaml"
    spec.write_text(REGRESSION.format(loss="mse(pred, t)", train="train: {normalize: [x, t]}\n"))
    assert main(["compile", str(spec), "-o", str(tmp_path / "refused")]) == 2
    assert "t is the target the loss compares predictions with" in capsys.readouterr().err
    spec.write_text(REGRESSION.format(loss="mse(pred, t)", train="train: {normalize: [x]}\n"))
    train = trainer(spec, target, tmp_path / target)
    data = regression_data(tmp_path / "d", 16, 0)
    done = subprocess.run([*train, "--data", data, "--normalize", "t"], capture_output=True, text=True)
    assert done.returncode == 2 and "--normalize t: the loss's target stays in its own units" in done.stderr, done.stderr


SEQUENCE_LABELLER = """\
name: seqlab
dims: {batch: 12, len: 7, feat: 5, ncls: 5}
inputs: {x: {shape: [batch, len, feat]}, lab: {shape: [batch, len], dtype: int}}
params: {W: {shape: [feat, ncls]}}
graph:
  logits: x @ W
  loss: cross_entropy(logits, lab) + 0.001 * sum(W * W)
loss: loss
outputs: [logits]
train: {lr: 0.5, epochs: 2, metric: [accuracy, macro_f1]}
"""


@pytest.mark.needs_cc
@pytest.mark.parametrize("batch_size", ["12", "5"])
def test_the_scores_a_metric_reads_outlive_the_statements_after_them(batch_size, tmp_path):
    """The penalty is computed after the cross-entropy: in C its buffers once
    took the logits' place in the work area before the metric read them."""
    spec = tmp_path / "seqlab.yaml"
    spec.write_text(SEQUENCE_LABELLER)
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, (40, 7))
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.eye(5)[labels] * 3 + 0.1 * rng.normal(size=(40, 7, 5)))
    np.save(data / "lab.npy", labels)
    lines = {}
    for target in ("numpy", "c"):
        train = trainer(spec, target, tmp_path / target)
        done = subprocess.run([*train, "--data", data, "--val", data, "--epochs", "2", "--batch-size", batch_size],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        lines[target] = [line.rsplit("  ", 1)[0] for line in done.stdout.splitlines()]
    assert lines["c"] == lines["numpy"]
    assert "val acc 1.0000  val f1 1.0000" in lines["c"][-1]
