"""The generated trainers (NumPy and C) train, checkpoint, resume and refuse bad data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main

ROOT = Path(__file__).resolve().parents[1]


def compile_example(name: str, out: Path, target: str = "numpy", dtype: str = "float32") -> list[str]:
    """The command that runs the example's trainer (built with make for C)."""
    assert main(["compile", str(ROOT / "examples" / f"{name}.yaml"), "-o", str(out), "--target", target, "--dtype", dtype]) == 0
    if target == "numpy":
        return [sys.executable, str(out / "train.py")]
    subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O2"], check=True, capture_output=True)
    return [str(out / "train")]


def run(train: list[str], *args) -> subprocess.CompletedProcess:
    return subprocess.run([*train, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(params=["numpy", "c"])
def target(request):
    return request.param


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


def test_trains_with_progress_lines_and_checkpoints(tmp_path, target):
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data, val = toy_digits(tmp_path / "train", 300, 0), toy_digits(tmp_path / "val", 100, 1)
    result = run(train, "--data", data, "--val", val, "--epochs", "5", "--save", tmp_path / "ckpt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("epoch") and "ex/s" in line for line in lines)
    assert float(lines[-1].split("val acc")[1].split()[0]) > 0.9
    saved = {p.name for p in (tmp_path / "ckpt").iterdir()}
    params = {"W1.npy", "b1.npy", "W2.npy", "b2.npy"}  # and momentum: the spec's optimizer is SGD with momentum
    assert saved == params | {f"optimizer.m.{p}" for p in params} | {"training.state.npy", "training.optimizer.npy", "symgraph-checkpoint.txt"}
    again = run(train, "--data", data, "--epochs", "1", "--init-from", tmp_path / "ckpt")
    assert again.returncode == 0, again.stderr


def test_same_seed_same_result(tmp_path, target):
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 100, 0)
    first = run(train, "--data", data, "--epochs", "2", "--seed", "3").stdout
    second = run(train, "--data", data, "--epochs", "2", "--seed", "3").stdout
    strip = lambda text: [line.rsplit("  ", 1)[0] for line in text.splitlines()]  # noqa: E731 - drop ex/s
    assert strip(first) == strip(second) and first


def test_scalar_example_trains_without_data(tmp_path, target):
    train = compile_example("slide", tmp_path / "trainer", target)
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


def test_c_trainer_prints_what_the_numpy_trainer_prints(tmp_path):
    """Same data, seed and float64 model: the same shuffles, steps and losses."""
    data, val = toy_digits(tmp_path / "train", 150, 0), toy_digits(tmp_path / "val", 50, 1)
    lines = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        result = run(train, "--data", data, "--val", val, "--epochs", "3", "--seed", "4")
        assert result.returncode == 0, result.stderr
        lines[target] = [line.rsplit("  ", 1)[0] for line in result.stdout.splitlines()]  # without ex/s
    assert lines["c"] == lines["numpy"] and len(lines["c"]) == 3


def test_c_checkpoints_are_npy_files_numpy_reads(tmp_path):
    train = compile_example("digits_mlp", tmp_path / "trainer", "c")
    data = toy_digits(tmp_path / "train", 64, 0)
    assert run(train, "--data", data, "--epochs", "1", "--save", tmp_path / "ckpt").returncode == 0
    w1 = np.load(tmp_path / "ckpt" / "W1.npy")
    assert w1.shape == (64, 128) and w1.dtype == np.float32 and np.all(np.isfinite(w1))
    np.save(tmp_path / "ckpt" / "W1.npy", np.zeros((3, 3), np.float32))
    result = run(train, "--data", data, "--epochs", "1", "--init-from", tmp_path / "ckpt")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "W1.npy: the shape differs" in result.stderr


# (how the data is spoiled, what the C trainer says, what the NumPy trainer says)
BAD_DATA = {
    "shape": (lambda d: np.save(d / "x.npy", np.zeros((50, 63), np.float32)), "x.npy: wrong shape", "input 'x' has shape"),
    "dtype": (lambda d: np.save(d / "y.npy", np.zeros(50, np.float32)), "y.npy: must hold integers", "must hold integers"),
    "counts": (lambda d: np.save(d / "y.npy", np.zeros(49, np.int64)), "number of examples differs", "examples, others have"),
    "labels": (lambda d: np.save(d / "y.npy", np.full(50, 10)), "ids outside [0, 10)", "ids outside [0, 10)"),
    "garbage": (lambda d: (d / "x.npy").write_bytes(b"not an array"), "x.npy: not a version 1 .npy file", "x.npy: cannot read"),
    "nan": (lambda d: np.save(d / "x.npy", np.full((50, 64), np.nan, np.float32)), "not finite", "finite numbers"),
    "inf": (lambda d: np.save(d / "x.npy", np.full((50, 64), np.inf)), "not finite", "finite numbers"),
    "missing": (lambda d: (d / "y.npy").unlink(), "y.npy: cannot open", "y.npy: cannot read"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_stops_before_training_in_one_line(tmp_path, target, case):
    corrupt, c_message, numpy_message = BAD_DATA[case]
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 50, 0)
    corrupt(data)
    result = run(train, "--data", data, "--epochs", "1", "--save", tmp_path / "ckpt")
    message = c_message if target == "c" else numpy_message
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "ckpt").exists()


def checkpoint(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(folder.glob("*.npy"))}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_gives_the_uninterrupted_run(tmp_path, target, optimizer):
    """Stop after epoch 2 and resume to 4: the same weights and optimiser state as 4 epochs at once."""
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 100, 0)
    common = ["--data", data, "--optimizer", optimizer, "--lr", "0.01", "--seed", "5"]
    assert run(train, *common, "--epochs", "2", "--save", tmp_path / "half").returncode == 0
    resumed = run(train, "--data", data, "--optimizer", optimizer, "--lr", "0.01", "--epochs", "4",
                  "--init-from", tmp_path / "half", "--save", tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert [line.split()[1] for line in resumed.stdout.splitlines()] == ["3", "4"]
    assert run(train, *common, "--epochs", "4", "--save", tmp_path / "whole").returncode == 0
    whole, again = checkpoint(tmp_path / "whole"), checkpoint(tmp_path / "resumed")
    assert sorted(whole) == sorted(again) and ("optimizer.v.W1.npy" in whole) == (optimizer == "adam")
    for name in whole:
        np.testing.assert_array_equal(again[name], whole[name], err_msg=name)


@pytest.mark.parametrize("optimizer", [(), ("--optimizer", "adam", "--weight-decay", "0.01"), ("--momentum", "0.9")])
def test_targets_agree_after_twenty_steps_with_dropout(tmp_path, optimizer):
    """float64, the same seed: identical shuffles, initial weights and dropout
    masks, and each optimiser's updates (the NumPy ones in place)."""
    data = toy_digits(tmp_path / "train", 640, 0)  # 20 steps of 32
    saved = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        result = run(train, "--data", data, "--epochs", "1", "--seed", "11", *optimizer, "--save", tmp_path / f"ckpt_{target}")
        assert result.returncode == 0, result.stderr
        saved[target] = checkpoint(tmp_path / f"ckpt_{target}")
    assert saved["c"]["training.state.npy"].tolist() == saved["numpy"]["training.state.npy"].tolist() == [1, 20, 11]
    for name, value in saved["numpy"].items():
        np.testing.assert_allclose(saved["c"][name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def toy_binary(folder: Path, count: int, seed: int) -> Path:
    """Two classes apart along a direction, on features of very different scales."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    x = rng.standard_normal((count, 30)) * np.logspace(-2, 3, 30) + np.outer(2 * y - 1, np.logspace(-2, 3, 30))
    folder.mkdir(parents=True)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y.astype(np.float64))
    return folder


def test_normalisation_is_measured_on_training_data_and_kept_for_evaluation(tmp_path, target):
    train = compile_example("logreg", tmp_path / "trainer", target)
    data, val = toy_binary(tmp_path / "train", 200, 0), toy_binary(tmp_path / "val", 60, 1)
    result = run(train, "--data", data, "--val", val, "--epochs", "3", "--save", tmp_path / "ckpt", "--log", tmp_path / "log.csv")
    assert result.returncode == 0, result.stderr
    x = np.load(data / "x.npy").astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(np.load(tmp_path / "ckpt" / "normalize.mean.x.npy"), x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "ckpt" / "normalize.std.x.npy"), x.std(axis=0), rtol=1e-5)
    last = result.stdout.splitlines()[-1]
    evaluated = run(train, "--val", val, "--eval", "--init-from", tmp_path / "ckpt")
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.split() == ["eval", "loss", last.split()[7], "acc", last.split()[10]]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,val_accuracy,lr,grad_norm,examples_per_second"
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3"] and len(rows[-1].split(",")) == 7
    assert abs(float(rows[-1].split(",")[3]) - float(last.split()[10])) < 1e-4


def test_csv_logs_of_both_targets_agree(tmp_path):
    data, val = toy_digits(tmp_path / "train", 96, 0), toy_digits(tmp_path / "val", 40, 1)
    logs = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        result = run(train, "--data", data, "--val", val, "--epochs", "2", "--log", tmp_path / f"{target}.csv")
        assert result.returncode == 0, result.stderr
        logs[target] = [row.rsplit(",", 1)[0] for row in (tmp_path / f"{target}.csv").read_text().splitlines()]  # without ex/s
    assert logs["c"] == logs["numpy"] and len(logs["c"]) == 3


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, target):
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 64, 0)
    assert run(train, "--data", data, "--epochs", "1", "--save", tmp_path / "ckpt").returncode == 0
    good = checkpoint(tmp_path / "ckpt")
    exploded = run(train, "--data", data, "--epochs", "3", "--lr", "1e30", "--init-from", tmp_path / "ckpt", "--save", tmp_path / "ckpt")
    assert exploded.returncode == 2 and "loss is not finite" in exploded.stderr and "last checkpoint is kept" in exploded.stderr
    kept = checkpoint(tmp_path / "ckpt")
    assert kept["training.state.npy"].tolist() == good["training.state.npy"].tolist() == [1, 2, 0]
    np.testing.assert_array_equal(kept["W1.npy"], good["W1.npy"])


def test_killed_trainer_always_leaves_a_loadable_checkpoint(tmp_path, target):
    """SIGKILL at random moments of a run that checkpoints every epoch: a complete
    checkpoint is always there (put back from CKPT.previous when the kill fell
    between the two renames) and resuming from it works."""
    import signal
    import time as clock

    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 64, 0)
    ckpt = tmp_path / "ckpt"
    assert run(train, "--data", data, "--epochs", "1", "--save", ckpt).returncode == 0
    rng = np.random.default_rng(0)
    params = {"W1.npy", "b1.npy", "W2.npy", "b2.npy"}
    for attempt in range(15):
        process = subprocess.Popen([*train, "--data", data, "--epochs", "100000", "--init-from", ckpt, "--save", ckpt],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        clock.sleep(float(rng.uniform(0.05, 0.6)) + (0.4 if target == "numpy" else 0.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        resumed = run(train, "--data", data, "--epochs", "0", "--init-from", ckpt, "--save", tmp_path / "copy")
        assert resumed.returncode == 0, (attempt, resumed.stderr)
        assert params <= {p.name for p in ckpt.iterdir()} and "training.state.npy" in {p.name for p in ckpt.iterdir()}
        state = np.load(ckpt / "training.state.npy")
        assert state[0] >= 1 and state[1] == 2 * state[0]  # 64 examples, batches of 32: whole epochs only


def test_checkpoint_is_put_back_after_a_crash_between_the_renames(tmp_path, target):
    train = compile_example("digits_mlp", tmp_path / "trainer", target)
    data = toy_digits(tmp_path / "train", 64, 0)
    assert run(train, "--data", data, "--epochs", "2", "--save", tmp_path / "ckpt").returncode == 0
    (tmp_path / "ckpt").rename(tmp_path / "ckpt.previous")  # the state a kill between the renames leaves
    resumed = run(train, "--data", data, "--epochs", "3", "--init-from", tmp_path / "ckpt", "--save", tmp_path / "ckpt")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split()[:2] == ["epoch", "3"] and np.load(tmp_path / "ckpt" / "training.state.npy")[0] == 3
    assert not (tmp_path / "ckpt.previous").exists()


def test_params_that_share_one_gradient_each_take_their_own_step(tmp_path):
    """d loss/da and d loss/db are one node here: the NumPy trainer scales
    gradients in place, so each param must get an array of its own."""
    spec = tmp_path / "shared.yaml"
    spec.write_text(
        "name: shared\n"
        "dims: {batch: 4}\n"
        "inputs: {x: {shape: [batch, 3]}}\n"
        "params: {a: {shape: [3], init: normal(0.5)}, b: {shape: [3], init: normal(0.5)}}\n"
        "graph:\n  loss: mean(sum(x * x * (a + b), axis=1))\n"
        "loss: loss\n"
        "train: {optimizer: sgd, lr: 0.1, batch_size: 4}\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.random.default_rng(0).standard_normal((8, 3)))
    saved = {}
    for target in ("numpy", "c"):
        assert main(["compile", str(spec), "-o", str(tmp_path / target), "--target", target, "--dtype", "float64"]) == 0
        if target == "c":
            subprocess.run(["make", "-s", "-C", str(tmp_path / target), "CFLAGS=-O2"], check=True, capture_output=True)
        train = [sys.executable, str(tmp_path / target / "train.py")] if target == "numpy" else [str(tmp_path / target / "train")]
        result = run(train, "--data", data, "--epochs", "1", "--save", tmp_path / f"ckpt_{target}")
        assert result.returncode == 0, result.stderr
        saved[target] = checkpoint(tmp_path / f"ckpt_{target}")
    for name in ("a.npy", "b.npy"):
        np.testing.assert_allclose(saved["numpy"][name], saved["c"][name], rtol=1e-12, err_msg=name)


FOLDED = """name: folded
dims: {batch: 4, d: 3}
inputs: {x: {shape: [batch, d]}, t: {shape: [batch, d]}}
params: {W: {shape: [d, d]}}
graph: {flat: 'reshape(x @ W, [-1])', loss: 'mse(flat, reshape(t, [-1]))'}
loss: loss
train: {batch_size: 4, epochs: 2, lr: 0.1}
"""


def test_a_model_that_folds_the_batch_trains_on_whole_batches_in_both_trainers(tmp_path):
    """reshape(x @ W, [-1]) folds the batch axis: both trainers take whole
    batches of 4 only (10 examples: two batches, the last 2 left out of each
    epoch), print the same lines, and refuse another batch size in one line."""
    spec = tmp_path / "folded.yaml"
    spec.write_text(FOLDED)
    rng = np.random.default_rng(0)
    for part, count in (("train", 10), ("val", 6)):
        (tmp_path / part).mkdir()
        np.save(tmp_path / part / "x.npy", rng.standard_normal((count, 3)))
        np.save(tmp_path / part / "t.npy", rng.standard_normal((count, 3)))
    lines = {}
    for target in ("numpy", "c"):
        out = tmp_path / target
        assert main(["compile", str(spec), "-o", str(out), "--target", target, "--dtype", "float64"]) == 0
        if target == "numpy":
            train = [sys.executable, str(out / "train.py")]
        else:
            subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O2"], check=True, capture_output=True)
            train = [str(out / "train")]
        result = run(train, "--data", tmp_path / "train", "--val", tmp_path / "val")
        assert result.returncode == 0, result.stderr
        lines[target] = [line.rsplit("  ", 1)[0] for line in result.stdout.splitlines()]
        refused = run(train, "--data", tmp_path / "train", "--batch-size", "3")
        assert refused.returncode == 2 and refused.stderr.startswith("error: --batch-size must be 4"), refused.stderr
    assert lines["c"] == lines["numpy"] and len(lines["c"]) == 2


@pytest.mark.parametrize("flags", [
    ("--lr", "nan"), ("--momentum", "nan"), ("--weight-decay", "inf"), ("--lr", "-1"), ("--epochs", "-2"),
    ("--batch-size", "0"), ("--seed", str(2**64)), ("--seed", "x"), ("--epoch", "3"), ("--optimizer", "adagrad"),
    ("--schedule", "linear"), ("--clip", "1"), ("--lr",), ("--lr", "0x1p-3"), ("--epochs", "1_0"), ("--epochs", "\u0662"),
    ("--lr", "0.1 "), ("--eval=yes",), ("--lr", "--epochs", "2"),
])
def test_both_trainers_refuse_the_same_flags_with_the_same_words(tmp_path, flags):
    data = toy_digits(tmp_path / "train", 40, 0)
    said = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        done = run(train, "--data", data, "--epochs", "1", *flags)
        assert done.returncode == 2 and done.stdout == "", (target, done.stdout, done.stderr)
        said[target] = done.stderr.splitlines()[-1]
    assert said["numpy"] == said["c"], said


@pytest.mark.parametrize("what", ["missing", "file", "data"])
def test_both_trainers_refuse_what_is_no_checkpoint_with_the_same_words(tmp_path, what):
    data = toy_digits(tmp_path / "train", 40, 0)
    given = {"missing": tmp_path / "nothing", "file": data / "x.npy", "data": data}[what]
    said = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        done = run(train, "--data", data, "--init-from", given)
        assert done.returncode == 2 and done.stdout == "", (target, done.stdout, done.stderr)
        said[target] = done.stderr.splitlines()[-1]
    assert said["numpy"] == said["c"], said
    assert said["c"].startswith(f"error: --init-from {given}: ") and {"missing": "No such file", "file": "is a file",
                                                                       "data": "is no checkpoint"}[what] in said["c"], said


def test_a_huge_seed_with_dropout_trains_alike_in_both_trainers(tmp_path):
    """The step seed wraps as C's uint64_t does: the NumPy trainer raised OverflowError at 2**44."""
    data = toy_digits(tmp_path / "train", 64, 0)
    lines = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        done = run(train, "--data", data, "--epochs", "1", "--seed", str(2**63 - 1))
        assert done.returncode == 0, done.stderr
        lines[target] = done.stdout.rsplit("  ", 1)[0]
    assert lines["numpy"] == lines["c"]


@pytest.mark.parametrize("damage", ["fifo", "negative seed", "strings", "stats shape"])
def test_damaged_files_are_refused_alike_and_never_hang(tmp_path, damage):
    import os

    data = toy_digits(tmp_path / "train", 40, 0)
    said = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        ckpt = tmp_path / f"ckpt-{target}"
        assert run(train, "--data", data, "--epochs", "1", "--normalize", "x", "--save", ckpt).returncode == 0
        folder = data
        if damage == "fifo":
            folder = tmp_path / f"fifo-{target}"
            folder.mkdir()
            np.save(folder / "y.npy", np.zeros(4, np.int64))
            os.mkfifo(folder / "x.npy")
            args = ["--data", folder, "--epochs", "1"]
        else:
            if damage == "negative seed":
                np.save(ckpt / "training.state.npy", np.array([1, 2, -1], np.int64))
            elif damage == "strings":
                np.save(ckpt / "training.state.npy", np.array(["1", "2", "3"]))
            else:
                np.save(ckpt / "normalize.mean.x.npy", np.zeros(3))
            args = ["--data", data, "--epochs", "2", "--init-from", ckpt, "--normalize", "x"]
        done = subprocess.run([*train, *map(str, args)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, (target, done.stderr)
        said[target] = done.stderr.replace(str(ckpt), "CKPT").replace(str(folder), "DATA")
    if damage in ("fifo", "negative seed"):
        assert said["numpy"] == said["c"], said


def test_a_flag_may_carry_its_value_after_an_equals_sign_in_both(tmp_path):
    data = toy_digits(tmp_path / "train", 40, 0)
    lines = {}
    for target in ("numpy", "c"):
        train = compile_example("digits_mlp", tmp_path / target, target, dtype="float64")
        done = run(train, "--data", data, "--epochs=2", "--lr=0.05")
        assert done.returncode == 0, done.stderr
        lines[target] = [line.rsplit("  ", 1)[0] for line in done.stdout.splitlines()]
    assert lines["numpy"] == lines["c"] and len(lines["c"]) == 2 and "lr 0.05" in lines["c"][0]


def test_a_checkpoint_keeps_the_normalisation_asked_for_on_the_command_line(tmp_path, target):
    """--normalize x at training: --eval, --predict and a resumed run use the checkpoint's statistics without it."""
    train = compile_example("digits_mlp", tmp_path / "trainer", target, dtype="float64")
    data, val = toy_digits(tmp_path / "train", 96, 0), toy_digits(tmp_path / "val", 32, 1)
    np.save(data / "x.npy", np.load(data / "x.npy") * 40 + 7)  # far from standard: the statistics matter
    np.save(val / "x.npy", np.load(val / "x.npy") * 40 + 7)
    trained = run(train, "--data", data, "--val", val, "--epochs", "2", "--normalize", "x", "--save", tmp_path / "ckpt")
    assert trained.returncode == 0, trained.stderr
    last = trained.stdout.splitlines()[-1].split("  val ", 1)[1].split("  lr")[0]
    evaluated = run(train, "--eval", "--init-from", tmp_path / "ckpt", "--val", val)
    assert evaluated.stdout == f"eval  {last.replace('val ', '')}\n", (evaluated.stdout, last)
    resumed = run(train, "--data", data, "--epochs", "3", "--init-from", tmp_path / "ckpt", "--save", tmp_path / "ckpt")
    assert resumed.returncode == 0 and (tmp_path / "ckpt" / "normalize.mean.x.npy").exists(), resumed.stderr
    whole = run(train, "--data", data, "--epochs", "3", "--normalize", "x", "--save", tmp_path / "whole")
    assert whole.returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "ckpt" / "W1.npy"), np.load(tmp_path / "whole" / "W1.npy"))


# -- the user's files: what the trainers refuse to replace, and what they keep -----------------
@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """Both trainers of the digits MLP (float64) and a training folder."""
    folder = tmp_path_factory.mktemp("trainers")
    built = {t: compile_example("digits_mlp", folder / t, t, dtype="float64") for t in ("numpy", "c")}
    return built, toy_digits(folder / "train", 40, 0)


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["own previous folder", "own previous file", "only a previous folder", "out exists",
                                  "log of another kind", "save is save-best", "empty value"])
def test_both_trainers_refuse_to_touch_files_of_the_users_in_the_same_words(trainers, tmp_path, case):
    """A trial found that --save deleted the user's CKPT.previous (or renamed it
    to CKPT), that --out replaced any .npy and --log appended to any file."""
    built, data = trainers
    said = {}
    for target, train in built.items():
        work = tmp_path / target
        work.mkdir()
        if case == "own previous folder":
            (work / "ck").mkdir()
            (work / "ck.previous").mkdir()
            (work / "ck.previous" / "notes.txt").write_text("mine")
            args = ["--save", work / "ck"]
        elif case == "own previous file":
            (work / "ck.previous").write_text("mine")
            args = ["--save", work / "ck"]
        elif case == "only a previous folder":
            (work / "ck.previous").mkdir()
            (work / "ck.previous" / "a.txt").write_text("mine")
            args = ["--save-best", work / "ck", "--val", data]
        elif case == "out exists":
            assert run(train, "--data", data, "--epochs", "1", "--save", work / "ck").returncode == 0
            np.save(work / "mine.npy", np.arange(3))
            args = ["--init-from", work / "ck", "--predict", data, "--out", work / "mine.npy"]
        elif case == "log of another kind":
            (work / "notes.csv").write_text("a,b\n1,2\n")
            args = ["--log", work / "notes.csv"]
        elif case == "save is save-best":
            args = ["--val", data, "--save", work / "ck", "--save-best", work / "ck"]
        else:
            args = ["--save", ""]
        before = files_under(work)
        done = run(train, "--data", data, "--epochs", "1", *args)
        assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, (target, done.stdout, done.stderr)
        assert files_under(work) == before, target
        said[target] = done.stderr.replace(str(work), "WORK")
    assert said["numpy"] == said["c"], said
    expected = {"own previous folder": "WORK/ck.previous holds files this trainer did not write (notes.txt), and saving would replace it",
                "own previous file": "WORK/ck.previous is a file, not a checkpoint folder, and saving would replace it",
                "only a previous folder": "WORK/ck.previous holds files this trainer did not write (a.txt)",
                "out exists": "exists; predictions never replace a file", "log of another kind": "is not a log of this trainer",
                "save is save-best": "is --save's folder too", "empty value": "error: --save needs a value"}[case]
    assert expected in said["c"], said["c"]


def test_a_log_of_the_trainer_is_appended_to_on_resuming(trainers, tmp_path, target):
    built, data = trainers
    train, log = built[target], tmp_path / "log.csv"
    assert run(train, "--data", data, "--epochs", "1", "--save", tmp_path / "ck", "--log", log).returncode == 0
    resumed = run(train, "--data", data, "--epochs", "2", "--init-from", tmp_path / "ck", "--log", log)
    assert resumed.returncode == 0, resumed.stderr
    rows = log.read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_resuming_keeps_the_optimisers_settings_unless_a_flag_gives_them(trainers, tmp_path, target):
    """--momentum 0.9 for 2 epochs, saved, then resumed without the flag, must
    go on as 4 epochs in one run (momentum fell back to the spec's 0)."""
    built, data = trainers
    train = built[target]
    flags = ["--data", data, "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "0.01", "--lr", "0.05"]
    whole = run(train, *flags, "--epochs", "4")
    assert run(train, *flags, "--epochs", "2", "--save", tmp_path / "ck").returncode == 0
    resumed = run(train, "--data", data, "--lr", "0.05", "--epochs", "4", "--init-from", tmp_path / "ck")
    assert resumed.returncode == 0, resumed.stderr
    tail = lambda out: [line.rsplit("  ", 1)[0] for line in out.splitlines()][-2:]  # noqa: E731 - without the timing
    assert tail(resumed.stdout) == tail(whole.stdout)
    overridden = run(train, "--data", data, "--lr", "0.05", "--epochs", "4", "--init-from", tmp_path / "ck", "--momentum", "0")
    assert tail(overridden.stdout) != tail(whole.stdout)
    # evaluation and prediction read no optimiser: another one given is no mistake
    assert run(train, "--eval", "--init-from", tmp_path / "ck", "--val", data, "--optimizer", "adam").returncode == 0


@pytest.mark.parametrize("damage", ["a listed file missing", "a nan weight"])
def test_both_trainers_refuse_a_damaged_checkpoint_in_the_same_words(trainers, tmp_path, damage):
    built, data = trainers
    said = {}
    for target, train in built.items():
        ck = tmp_path / target
        assert run(train, "--data", data, "--epochs", "1", "--momentum", "0.9", "--save", ck).returncode == 0
        if damage == "a listed file missing":
            (ck / "optimizer.m.W1.npy").unlink()
        else:
            weights = np.load(ck / "W1.npy")
            weights[0, 0] = np.nan
            np.save(ck / "W1.npy", weights)
        done = run(train, "--data", data, "--epochs", "2", "--init-from", ck)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (target, done.stderr)
        said[target] = done.stderr.replace(str(ck), "CK")
    assert said["numpy"] == said["c"], said
    assert {"a listed file missing": "lists optimizer.m.W1.npy, which is missing",
            "a nan weight": "W1.npy: holds a value that is not finite"}[damage] in said["c"]


@pytest.mark.parametrize("args", [["--help", "--bogus"], ["--bogus", "-h"], ["--lr", "--help"]])
def test_help_wins_over_anything_else_given_in_both_trainers(trainers, args):
    built, _ = trainers
    printed = {}
    for target, train in built.items():
        done = run(train, *args)
        assert done.returncode == 0 and done.stderr == "", (target, done.stderr)
        printed[target] = done.stdout
    assert printed["numpy"] == printed["c"] and printed["c"].startswith("usage: ./train")
