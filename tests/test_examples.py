"""The examples train on their real data: the preparation scripts, the
Kneser-Ney baseline, and the small models to their accuracy bars with both
trainers (the language models and the text CNN train for minutes; their bars
are checked by `make nlm`, `make transformer` and `make textcnn`, and
smoke-tested here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_trainer import compile_example, run

ROOT = Path(__file__).resolve().parents[1]


def prepare(name: str, out: Path, *args) -> Path:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name / "prepare.py"), str(out), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def final(result: subprocess.CompletedProcess, column: str) -> float:
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()[-1].split()
    return float(words[words.index(column) + 1])


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize(
    "example, folder, bar",
    [("digits_mlp", "digits", 0.97), ("digits_cnn", "digits", 0.99), ("logreg", "breast_cancer", 0.95)],
)
def test_small_examples_reach_their_accuracy(example, folder, bar, target, tmp_path):
    data = prepare(folder, tmp_path / "data")
    train = compile_example(example, tmp_path / "trainer", target)
    result = run(train, "--data", data / "train", "--val", data / "val")
    assert final(result, "acc") >= bar, result.stdout


def test_regression_example_comes_near_least_squares_with_both_trainers(tmp_path):
    """The diabetes example's validation RMSE, in both trainers (the same to the
    printed digits), within 2% of least squares' on the same split."""
    data = prepare("diabetes", tmp_path / "data")
    diabetes = load_module(ROOT / "examples" / "diabetes" / "prepare.py")
    parts = {p: (np.load(data / p / "x.npy"), np.load(data / p / "y.npy")) for p in ("train", "val")}
    yardstick = diabetes.least_squares_rmse(*parts["train"], *parts["val"])
    found = {}
    for target in ("numpy", "c"):
        train = compile_example("diabetes", tmp_path / target, target)
        found[target] = final(run(train, "--data", data / "train", "--val", data / "val"), "rmse")
    assert found["numpy"] == found["c"] and found["c"] < 1.02 * yardstick, (found, yardstick)


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.parent.name + "_prepare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kneser_ney_distributions_sum_to_one():
    kjv = load_module(ROOT / "examples" / "kjv" / "prepare.py")
    rng = np.random.default_rng(0)
    targets = rng.zipf(1.5, 5000) % 50
    contexts = np.stack([np.roll(targets, k) for k in (3, 2, 1)], axis=1)
    model = kjv.KneserNey(contexts, targets, 60)
    for u, v in [(0, 1), (3, 3), (59, 58), (int(targets[10]), int(targets[11]))]:
        assert abs(sum(model.trigram(u, v, w) for w in range(60)) - 1.0) < 1e-9
    assert model.perplexity(contexts[:500], targets[:500]) < 60  # better than uniform on text it has seen


def test_language_model_data_and_a_training_epoch(tmp_path):
    data = prepare("kjv", tmp_path / "data", "--vocab", "3000")
    contexts, targets = np.load(data / "train" / "context_ids.npy"), np.load(data / "train" / "next_id.npy")
    assert contexts.shape == (len(targets), 3) and contexts.max() < 3000 and targets.max() < 3000
    baseline = float((data / "baseline.txt").read_text().split()[-1])
    assert 10 < baseline < 200
    small = tmp_path / "small"
    for part, count in (("train", 2560), ("val", 640)):
        (small / part).mkdir(parents=True)
        for name in ("context_ids", "next_id"):
            np.save(small / part / f"{name}.npy", np.load(data / part / f"{name}.npy")[:count])
    train = compile_example("nlm", tmp_path / "trainer", "c")
    result = run(train, "--data", small / "train", "--val", small / "val", "--epochs", "2")
    assert final(result, "ppl") < 3000  # below a uniform guess after two short epochs


def test_transformer_windows_and_a_training_epoch_in_both_trainers(tmp_path):
    """The windows are the verse stream shifted by one word, the mask is causal,
    and both trainers print the same epoch line on a slice of them."""
    data = prepare("kjv", tmp_path / "data", "--vocab", "3000") / "windows"
    tokens, targets = np.load(data / "train" / "tokens.npy"), np.load(data / "train" / "next_tokens.npy")
    assert tokens.shape == targets.shape and tokens.shape[1] == 16 and tokens.max() < 3000
    assert np.array_equal(tokens[:, 1:], targets[:, :-1]) and np.array_equal(tokens[1:, 0], targets[:-1, -1])
    mask = np.load(data / "train" / "mask.npy")
    assert np.array_equal(mask == 0, np.tril(np.ones((16, 16), bool))) and np.all(mask[mask != 0] == -1e9)
    small = tmp_path / "small"
    for part, count in (("train", 320), ("val", 64)):
        (small / part).mkdir(parents=True)
        for name in ("tokens", "next_tokens"):
            np.save(small / part / f"{name}.npy", np.load(data / part / f"{name}.npy")[:count])
        np.save(small / part / "mask.npy", mask)
    lines = []
    for target in ("c", "numpy"):
        train = compile_example("transformer", tmp_path / target, target)
        result = run(train, "--data", small / "train", "--val", small / "val", "--epochs", "1")
        assert final(result, "ppl") < 3000  # below a uniform guess
        lines.append(result.stdout.splitlines()[-1].rsplit("lr", 1)[0])
    assert lines[0] == lines[1]


def test_text_cnn_data_and_a_training_epoch(tmp_path):
    data = prepare("rotten_tomatoes", tmp_path / "data")
    tokens, labels = np.load(data / "train" / "tokens.npy"), np.load(data / "train" / "label.npy")
    assert tokens.shape == (len(labels), 50) and tokens.max() < 10000 and set(np.unique(labels)) == {0, 1}
    assert 10000 < len(labels) < 12000  # fresh and rotten rows only; plot summaries dropped
    train = compile_example("textcnn", tmp_path / "trainer", "c")
    result = run(train, "--data", data / "val", "--val", data / "val", "--epochs", "2")
    assert final(result, "acc") > 0.6
