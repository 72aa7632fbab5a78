"""The generated NumPy trainer trains, checkpoints, resumes and refuses bad data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import symgraph as sg
from symgraph.cli import main

ROOT = Path(__file__).resolve().parents[1]


def compile_example(name: str, out: Path) -> Path:
    assert main(["compile", str(ROOT / "examples" / f"{name}.yaml"), "-o", str(out)]) == 0
    return out / "train.py"


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)


def toy_digits(folder: Path, count: int, seed: int) -> Path:
    """Separable toy data for the digits MLP: the label is the brightest of ten pixel groups."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, count)
    x = rng.uniform(0, 0.3, (count, 64)).astype(np.float32)
    for k in range(10):
        x[y == k, k * 6 : k * 6 + 6] += 0.7
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return folder


def test_trains_with_progress_lines_and_checkpoints(tmp_path):
    train = compile_example("digits_mlp", tmp_path / "trainer")
    data, val = toy_digits(tmp_path / "train", 300, 0), toy_digits(tmp_path / "val", 100, 1)
    result = run(train, "--data", data, "--val", val, "--epochs", "5", "--save", tmp_path / "ckpt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("epoch") and "ex/s" in line for line in lines)
    assert float(lines[-1].split("val acc")[1].split()[0]) > 0.9
    saved = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert saved == {"W1.npy", "b1.npy", "W2.npy", "b2.npy"}
    again = run(train, "--data", data, "--epochs", "1", "--init-from", tmp_path / "ckpt")
    assert again.returncode == 0, again.stderr


def test_same_seed_same_result(tmp_path):
    train = compile_example("digits_mlp", tmp_path / "trainer")
    data = toy_digits(tmp_path / "train", 100, 0)
    first = run(train, "--data", data, "--epochs", "2", "--seed", "3").stdout
    second = run(train, "--data", data, "--epochs", "2", "--seed", "3").stdout
    strip = lambda text: [line.rsplit("  ", 1)[0] for line in text.splitlines()]  # noqa: E731 - drop ex/s
    assert strip(first) == strip(second) and first


def test_bad_labels_stop_before_training(tmp_path):
    train = compile_example("digits_mlp", tmp_path / "trainer")
    data = toy_digits(tmp_path / "train", 50, 0)
    np.save(data / "y.npy", np.full(50, 12))
    result = run(train, "--data", data, "--epochs", "1")
    assert result.returncode == 2
    assert "ids outside [0, 10)" in result.stderr and "Traceback" not in result.stderr


def test_scalar_example_trains_without_data(tmp_path):
    train = compile_example("slide", tmp_path / "trainer")
    result = run(train, "--epochs", "2", "--lr", "0.1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("epoch   1  train loss -10.0000")


def test_float32_and_float64_agree():
    g = sg.load(ROOT / "examples" / "mlp.yaml")
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((64, 784)), "y": rng.integers(0, 10, 64)}
    single, double = sg.compile(g, dtype="float32"), sg.compile(g, dtype="float64")
    params = double.init_params(0)
    loss32, grads32 = single.loss_and_grads(params, inputs)
    loss64, grads64 = double.loss_and_grads(params, inputs)
    assert grads32["W1"].dtype == np.float32 and grads64["W1"].dtype == np.float64
    assert abs(loss32 - loss64) < 1e-4 * abs(loss64)
    np.testing.assert_allclose(grads32["W2"], grads64["W2"], rtol=1e-3, atol=1e-5)
