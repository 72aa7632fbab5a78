"""What practitioners expect of a trainer, in both targets alike: one --help,
schedules, clipping, AdamW, RMSprop and Nesterov, early stopping and the best
checkpoint, threads, a live progress line, and stated resume rules."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main
from test_predict import SPEC
from test_predict import data as flower_data
from test_trainer import ROOT, compile_example, run, toy_digits

pytestmark = pytest.mark.needs_cc


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """Both trainers of the digits MLP in float64 (the C one also with OpenMP), and data."""
    root = tmp_path_factory.mktemp("features")
    built = {target: compile_example("digits_mlp", root / target, target, dtype="float64") for target in ("numpy", "c")}
    subprocess.run(["make", "-s", "-C", str(root / "c"), "OPENMP=1", "CFLAGS=-O2 -fopenmp", "train"], check=True, capture_output=True)
    shutil.copy(root / "c" / "train", root / "train_omp")
    subprocess.run(["make", "-s", "-C", str(root / "c"), "-B", "CFLAGS=-O2"], check=True, capture_output=True)
    return root, built, toy_digits(root / "train", 192, 0), toy_digits(root / "val", 64, 1)


def lines_of(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.rsplit("  ", 1)[0] for line in result.stdout.splitlines()]  # without the ex/s


def test_help_is_the_same_text_in_both_and_lists_every_flag(trainers):
    _, built, _, _ = trainers
    texts = {target: run(train, "--help").stdout for target, train in built.items()}
    assert texts["numpy"] == texts["c"]
    for flag in ("--schedule", "--warmup", "--clip-norm", "--optimizer", "--nesterov", "--patience", "--save-best", "--threads",
                 "--predict", "--gradcheck"):
        assert f"  {flag}" in texts["c"], flag
    assert "(default 0.1)" in texts["c"]  # the spec's lr


@pytest.mark.parametrize("flags", [
    ("--optimizer", "adamw", "--weight-decay", "0.05", "--lr", "0.01"),
    ("--optimizer", "rmsprop", "--lr", "0.001"),
    ("--momentum", "0.9", "--nesterov", "--weight-decay", "0.001"),
    ("--schedule", "cosine", "--warmup", "1"),
    ("--schedule", "step", "--step-epochs", "1", "--decay", "0.5"),
    ("--schedule", "exponential", "--decay", "0.7", "--clip-norm", "0.5"),
], ids=["adamw", "rmsprop", "nesterov", "cosine", "step", "exponential-clipped"])
def test_each_feature_trains_alike_in_both_and_resumes_exactly(trainers, flags, tmp_path):
    """float64: the same lines and the same checkpoint from both targets; a run
    split in two (resumed from its checkpoint) ends where the whole run does."""
    _, built, data, val = trainers
    lines, saved = {}, {}
    for target, train in built.items():
        lines[target] = lines_of(run(train, "--data", data, "--val", val, "--epochs", "3", *flags, "--save", tmp_path / target, "--log",
                                     tmp_path / f"{target}.csv"))
        saved[target] = {p.name: np.load(p) for p in (tmp_path / target).glob("*.npy")}
    assert lines["numpy"] == lines["c"] and len(lines["c"]) == 3
    for name, value in saved["numpy"].items():
        np.testing.assert_allclose(saved["c"][name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    rows = {t: [row.split(",")[:-1] for row in (tmp_path / f"{t}.csv").read_text().splitlines()] for t in built}
    assert rows["numpy"][0] == rows["c"][0] and [r[4] for r in rows["numpy"]] == [r[4] for r in rows["c"]]  # the lr column
    for target, train in built.items():
        first = tmp_path / f"half_{target}"
        lines_of(run(train, "--data", data, "--epochs", "2", *flags, "--save", first))
        lines_of(run(train, "--data", data, "--epochs", "3", *flags, "--init-from", first, "--save", first))
        for name, value in saved[target].items():
            np.testing.assert_array_equal(np.load(first / name), value, err_msg=(target, name))


def test_the_schedules_give_the_rates_they_promise(trainers):
    _, built, data, _ = trainers
    expected = {
        ("--schedule", "step", "--step-epochs", "2", "--decay", "0.5"): [0.1, 0.1, 0.05, 0.05, 0.025],
        ("--schedule", "exponential", "--decay", "0.5"): [0.1, 0.05, 0.025, 0.0125, 0.00625],
        ("--schedule", "cosine", "--warmup", "1"): [0.1] + [0.1 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)],
        ("--warmup", "4"): [0.025, 0.05, 0.075, 0.1, 0.1],
    }
    for flags, rates in expected.items():
        for target, train in built.items():
            shown = [float(line.split("  lr ")[1]) for line in lines_of(run(train, "--data", data, "--epochs", "5", *flags))]
            np.testing.assert_allclose(shown, rates, rtol=1e-3, err_msg=(target, flags))


def test_clipping_bounds_the_step_and_logs_the_norm(trainers, tmp_path):
    _, built, data, _ = trainers
    start = sg.compile(sg.load(ROOT / "examples" / "digits_mlp.yaml"), dtype="float64").init_params(0)
    for target, train in built.items():
        log = tmp_path / f"{target}.csv"
        lines_of(run(train, "--data", data, "--epochs", "1", "--momentum", "0", "--weight-decay", "1e-9", "--log", log))
        assert float(log.read_text().splitlines()[1].split(",")[5]) > 1e-3  # the mean gradient norm, logged
        after = tmp_path / f"after_{target}"
        lines_of(run(train, "--data", data, "--epochs", "1", "--lr", "0.5", "--clip-norm", "1e-6", "--save", after))
        moved = max(float(np.abs(np.load(after / f"{p}.npy") - start[p]).max()) for p in start)
        assert 0 < moved <= 6 * 0.5 * 1e-6 * 10, (target, moved)  # 6 steps of at most lr * limit, momentum 0.9 adding up to 10x


def test_early_stopping_and_the_best_checkpoint(trainers, tmp_path):
    _, built, data, val = trainers
    for target, train in built.items():
        result = run(train, "--data", data, "--val", val, "--epochs", "30", "--lr", "2.0", "--patience", "2", "--save-best", tmp_path / target)
        out = result.stdout.splitlines()
        assert result.returncode == 0 and out[-1].startswith("early stop: no better validation score for 2 epochs"), result.stdout
        accuracies = [float(line.split("val acc ")[1].split()[0]) for line in out if line.startswith("epoch")]
        best_epoch = int(np.argmax(accuracies)) + 1
        assert np.load(tmp_path / target / "training.state.npy")[0] == best_epoch
        assert len(accuracies) == best_epoch + 2
    refused = run(built["c"], "--data", data, "--patience", "2")
    assert refused.returncode == 2 and "give a validation folder" in refused.stderr


def test_resume_rules(trainers, tmp_path):
    root, built, data, _ = trainers
    for target, train in built.items():
        ckpt = tmp_path / f"ckpt_{target}"
        lines_of(run(train, "--data", data, "--epochs", "2", "--save", ckpt))
        more = run(train, "--data", data, "--epochs", "1", "--init-from", ckpt)
        assert more.returncode == 0 and more.stdout.strip() == f"{ckpt} has 2 epochs done, and --epochs 1 asks for no more: nothing to train"
        other = run(train, "--data", data, "--epochs", "3", "--optimizer", "adam", "--init-from", ckpt)
        assert other.returncode == 2 and "was trained with sgd; resume it with --optimizer sgd" in other.stderr, other.stderr
    spec = tmp_path / "flowers.yaml"
    spec.write_text(SPEC)
    assert main(["compile", str(spec), "-o", str(tmp_path / "flowers")]) == 0
    lines_of(run([sys.executable, str(tmp_path / "flowers" / "train.py")], "--data", flower_data(tmp_path / "flower_data", 20, 0), "--epochs", "1",
                 "--save", tmp_path / "foreign"))
    renamed = tmp_path / "renamed.yaml"  # the same params and shapes under another model's name
    renamed.write_text((ROOT / "examples" / "digits_mlp.yaml").read_text().replace("name: digits_mlp", "name: digits_twin"))
    assert main(["compile", str(renamed), "--dtype", "float64", "-o", str(tmp_path / "twin")]) == 0
    lines_of(run([sys.executable, str(tmp_path / "twin" / "train.py")], "--data", data, "--epochs", "1", "--save", tmp_path / "twin_ckpt"))
    for target, train in built.items():
        for other, name in ((tmp_path / "foreign", "flowers"), (tmp_path / "twin_ckpt", "digits_twin")):
            done = run(train, "--data", data, "--epochs", "1", "--init-from", other)
            assert done.returncode == 2 and done.stderr.count("\n") == 1 and f"is a checkpoint of {name}, not of digits_mlp" in done.stderr, done.stderr


def test_threads_give_the_same_results(trainers, tmp_path):
    root, built, data, _ = trainers
    runs = [lines_of(run([str(root / "train_omp")], "--data", data, "--epochs", "2", "--threads", str(k))) for k in (1, 2)]
    runs.append(lines_of(run(built["numpy"], "--data", data, "--epochs", "2", "--threads", "1")))
    assert runs[0] == runs[1] == runs[2]


def test_a_progress_line_on_a_terminal_only(trainers, tmp_path):
    """Under a pseudo-terminal the epoch's progress is redrawn in place and
    cleared before the epoch line; into a pipe, only the epoch lines."""
    script = shutil.which("script")
    if script is None:
        pytest.skip("no script(1) to make a terminal")
    _, built, data, _ = trainers
    sizes = {"numpy": (20000, 1), "c": (60000, 1)}  # an epoch of a second or two in each
    for target, train in built.items():
        count, batch_size = sizes[target]
        big = toy_digits(tmp_path / f"big_{target}", count, 2)
        command = " ".join([*map(str, train), "--data", str(big), "--epochs", "1", "--batch-size", str(batch_size), "--lr", "0.01"])
        shown = subprocess.run([script, "-qec", command, "/dev/null"], capture_output=True, timeout=300)  # bytes: \r stays \r
        assert shown.returncode == 0, shown.stdout
        text = shown.stdout.decode()
        assert "\r  batch " in text and " s left" in text and "\r\x1b[K" in text, (target, text[:300])
        piped = run(train, "--data", data, "--epochs", "1")
        assert "\r" not in piped.stdout and piped.stdout.startswith("epoch   1")


def test_several_metrics_at_once_agree_with_scikit_learn(tmp_path):
    """macro-F1, accuracy and top-3 in one epoch line and one log, in both
    trainers alike, and equal to scikit-learn's on the checkpoint's predictions."""
    metrics = pytest.importorskip("sklearn.metrics")
    spec = tmp_path / "multi.yaml"
    text = (ROOT / "examples" / "digits_mlp.yaml").read_text()
    spec.write_text(text.replace("seed: 0", "seed: 0, metric: [macro_f1, accuracy, top3]"))
    data, val = toy_digits(tmp_path / "train", 192, 0), toy_digits(tmp_path / "val", 97, 1)
    lines = {}
    for target in ("numpy", "c"):
        assert main(["compile", str(spec), "--target", target, "--dtype", "float64", "-o", str(tmp_path / target)]) == 0
        if target == "c":
            subprocess.run(["make", "-s", "-C", str(tmp_path / "c"), "CFLAGS=-O2"], check=True, capture_output=True)
        train = [str(tmp_path / "c" / "train")] if target == "c" else [sys.executable, str(tmp_path / "numpy" / "train.py")]
        lines[target] = lines_of(run(train, "--data", data, "--val", val, "--epochs", "2", "--lr", "0.01", "--save", tmp_path / f"ck_{target}"))
    assert lines["numpy"] == lines["c"]
    last = lines["c"][-1].split()
    shown = {name: float(last[last.index(name) + 1]) for name in ("f1", "acc", "top3")}
    scores = sg.compile(sg.load(spec), dtype="float64").predict({"x": np.load(val / "x.npy")}, checkpoint=tmp_path / "ck_c")["logits"]
    y = np.load(val / "y.npy")
    assert shown["f1"] == pytest.approx(metrics.f1_score(y, scores.argmax(axis=1), average="macro"), abs=6e-5)
    assert shown["acc"] == pytest.approx(metrics.accuracy_score(y, scores.argmax(axis=1)), abs=6e-5)
    assert shown["top3"] == pytest.approx(metrics.top_k_accuracy_score(y, scores, k=3, labels=range(10)), abs=6e-5)


def test_the_specs_patience_waits_for_a_validation_folder(tmp_path):
    spec = tmp_path / "patient.yaml"
    spec.write_text((ROOT / "examples" / "digits_mlp.yaml").read_text().replace("seed: 0", "seed: 0, patience: 2"))
    data, val = toy_digits(tmp_path / "train", 64, 0), toy_digits(tmp_path / "val", 32, 1)
    for target in ("numpy", "c"):
        assert main(["compile", str(spec), "--target", target, "-o", str(tmp_path / target)]) == 0
        if target == "c":
            subprocess.run(["make", "-s", "-C", str(tmp_path / "c"), "CFLAGS=-O1"], check=True, capture_output=True)
        train = [str(tmp_path / "c" / "train")] if target == "c" else [sys.executable, str(tmp_path / "numpy" / "train.py")]
        assert len(lines_of(run(train, "--data", data, "--epochs", "2"))) == 2  # no --val: nothing to judge by, no refusal
        refused = run(train, "--data", data, "--epochs", "2", "--patience", "1")
        assert refused.returncode == 2 and "give a validation folder" in refused.stderr
