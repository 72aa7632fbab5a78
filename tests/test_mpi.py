"""Data-parallel training over MPI, in both trainers: K processes train as one
(float64, to 1e-10 after 20 steps, dropout and input normalisation included),
runs with the same K are bit-identical, a checkpoint resumes with any K, and a
bad shard or a dead process ends every process, never hanging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import require_tool
from test_trainer import compile_example, toy_digits

pytestmark = pytest.mark.needs_cc
EPOCHS = ("--epochs", "3", "--batch-size", "16", "--normalize", "x")  # 103 examples: 7 steps an epoch, the last of 7 examples


def mpirun(k: int, train: list[str], *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """train under mpirun with k processes on this machine (-q: only the processes' own lines)."""
    command = [require_tool("mpirun", "openmpi-bin"), "-q", "--oversubscribe", "-np", str(k)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return subprocess.run([*command, *train, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """The digits MLP (dropout 0.2) in float64: the NumPy trainer, and the C one built with MPI=1."""
    require_tool("mpicc", "libopenmpi-dev")
    root = tmp_path_factory.mktemp("mpi")
    built = {"numpy": compile_example("digits_mlp", root / "numpy", "numpy", dtype="float64")}
    compile_example("digits_mlp", root / "c", "c", dtype="float64")
    subprocess.run(["make", "-s", "-C", str(root / "c"), "-B", "MPI=1", "CFLAGS=-O2 -Werror"], check=True, capture_output=True)
    built["c"] = [str(root / "c" / "train")]
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if os.environ.get("SYMGRAPH_REQUIRE_TOOLS"):
            pytest.fail("mpi4py is missing; the Makefile installs the mpi extra")
        del built["numpy"]
    return root, built, toy_digits(root / "train", 103, 0), toy_digits(root / "val", 50, 1)


@pytest.fixture(params=["numpy", "c"])
def target(request, trainers):
    if request.param not in trainers[1]:
        pytest.skip("mpi4py is not installed")
    return request.param


def params_of(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in folder.glob("*.npy")}


def lines(result) -> list[str]:
    """The epoch lines, without the rate and the processes' share of time."""
    assert result.returncode == 0, result.stderr
    return [line.split("  lr ")[0] for line in result.stdout.splitlines()]


@pytest.mark.parametrize("k", [2, 3])
def test_k_processes_train_as_one(trainers, target, k, tmp_path):
    _, built, data, val = trainers
    alone = subprocess.run([*built[target], "--data", data, "--val", val, *EPOCHS, "--save", tmp_path / "one"], capture_output=True, text=True)
    together = mpirun(k, built[target], "--data", data, "--val", val, *EPOCHS, "--save", tmp_path / "many")
    assert lines(together) == lines(alone)
    assert f"{k} processes" in together.stdout and together.stdout.count("epoch ") == 3  # one process prints
    shares = [int(line.rsplit(", ", 1)[1].split("%")[0]) for line in together.stdout.splitlines()]
    assert all(0 <= share <= 100 for share in shares), shares  # of the training steps' time
    one, many = params_of(tmp_path / "one"), params_of(tmp_path / "many")
    assert one.keys() == many.keys()
    for name, value in one.items():
        np.testing.assert_allclose(many[name], value, rtol=1e-10, atol=1e-13, err_msg=name)


def test_runs_with_the_same_k_are_bit_identical(trainers, target, tmp_path):
    _, built, data, val = trainers
    for run in ("first", "second"):
        assert mpirun(3, built[target], "--data", data, "--val", val, *EPOCHS, "--save", tmp_path / run).returncode == 0
    first, second = params_of(tmp_path / "first"), params_of(tmp_path / "second")
    for name, value in first.items():
        assert value.tobytes() == second[name].tobytes(), name


def test_a_checkpoint_resumes_with_any_k(trainers, target, tmp_path):
    _, built, data, _ = trainers
    whole = subprocess.run([*built[target], "--data", data, *EPOCHS, "--save", tmp_path / "whole"], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    start = mpirun(2, built[target], "--data", data, *EPOCHS, "--epochs", "1", "--save", tmp_path / "split")
    assert start.returncode == 0, start.stderr
    rest = mpirun(3, built[target], "--data", data, *EPOCHS, "--init-from", tmp_path / "split", "--save", tmp_path / "split")
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.startswith("epoch   2")
    for name, value in params_of(tmp_path / "whole").items():
        np.testing.assert_allclose(np.load(tmp_path / "split" / name), value, rtol=1e-10, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("where", ["val", "train"])
def test_a_bad_shard_ends_every_process_with_one_line(trainers, target, where, tmp_path):
    """Damage that only the second process reads: it says so, once, and all end with 2."""
    _, built, data, val = trainers
    folders = {"train": data, "val": val}
    bad = tmp_path / where
    bad.mkdir()
    x, y = np.load(folders[where] / "x.npy"), np.load(folders[where] / "y.npy")
    if where == "val":
        y[-1] = 10  # a class the model does not have, in the last batch
    else:
        x[-1, 3] = np.nan
    np.save(bad / "x.npy", x)
    np.save(bad / "y.npy", y)
    folders[where] = bad
    started = time.monotonic()
    result = mpirun(2, built[target], "--data", folders["train"], "--val", folders["val"], *EPOCHS, timeout=60)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "process 1 of 2" in errors[0], result.stderr
    assert str(bad) in errors[0] and "Traceback" not in result.stderr
    assert result.stdout == "" and time.monotonic() - started < 60


def test_a_dead_process_ends_the_run_and_its_checkpoint_stays_usable(trainers, target, tmp_path):
    _, built, data, val = trainers
    command = [require_tool("mpirun", "openmpi-bin"), "-q", "--oversubscribe", "-np", "2"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")
    saved = tmp_path / "ckpt"
    running = subprocess.Popen([*command, *built[target], "--data", str(data), "--epochs", "1000000", "--save", str(saved)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (saved / "symgraph-checkpoint.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert saved.exists(), "no checkpoint was written"
        second = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if second_process(pid, tmp_path)]
        assert second, "the second process was not found"
        os.kill(second[0], signal.SIGKILL)
        assert running.wait(timeout=60) != 0
    finally:
        running.kill()
        running.wait()
    evaluated = subprocess.run([*built[target], "--eval", "--init-from", saved, "--val", val], capture_output=True, text=True)
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("eval  loss"), evaluated.stderr


def second_process(pid: int, tmp_path: Path) -> bool:
    """Whether pid is the MPI process of rank 1 of a run saving under tmp_path."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"OMPI_COMM_WORLD_RANK=1" in environ and str(tmp_path).encode() in command


def test_a_loss_that_couples_examples_is_refused(target, tmp_path):
    """A sum over the batch: shares would not add up to the batch, so K > 1 refuses, naming the node."""
    spec = tmp_path / "summed.yaml"
    spec.write_text("name: summed\ndims: {batch: 8, d: 3}\ninputs: {x: {shape: [batch, d]}, t: {shape: [batch]}}\n"
                    "params: {w: {shape: [d], init: zeros}}\ngraph:\n  err: x @ w - t\n  total: sum(err * err)\nloss: total\n")
    train = compile_built(spec, tmp_path / target, target)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "x.npy", np.ones((8, 3)))
    np.save(data / "t.npy", np.ones(8))
    result = mpirun(2, train, "--data", data, "--epochs", "1")
    assert result.returncode == 2
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "cannot train over 2 processes: total (sum) sums over the batch axis" in errors[0], result.stderr


def compile_built(spec: Path, out: Path, target: str) -> list[str]:
    from symgraph.cli import main

    assert main(["compile", str(spec), "-o", str(out), "--target", target]) == 0
    if target == "numpy":
        return [sys.executable, str(out / "train.py")]
    subprocess.run(["make", "-s", "-C", str(out), "MPI=1", "CFLAGS=-O2 -Werror"], check=True, capture_output=True)
    return [str(out / "train")]


@pytest.mark.parametrize("flag, where, says", [
    ("--save", "missing/ckpt", "--save {}: the folder that would hold it does not exist or cannot be written"),
    ("--save-best", "missing/ckpt", "--save-best {}: the folder that would hold it does not exist or cannot be written"),
    ("--log", ".", "--log {}: is a folder; the log is a .csv file"),
])
def test_outputs_that_cannot_be_written_are_refused_before_any_work(trainers, target, flag, where, says, tmp_path):
    _, built, data, val = trainers
    path = tmp_path / where
    result = mpirun(2, built[target], "--data", data, "--val", val, "--epochs", "1", flag, path, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: {says.format(path)}"], result.stderr


def test_without_mpi_the_c_trainer_holds_none_of_it(tmp_path):
    """Without MPI=1 nothing of MPI is compiled in: the plain build links no MPI library,
    and under mpirun it refuses to run as several separate trainings."""
    train = compile_example("digits_mlp", tmp_path / "plain", "c")
    refused = mpirun(2, train, "--epochs", "1", timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: started as one of 2 MPI processes, but this trainer was built without MPI; build it with make MPI=1"]
    linked = subprocess.run(["ldd", train[0]], capture_output=True, text=True).stdout
    assert "libmpi" not in linked, linked
    binary = Path(train[0]).read_bytes()
    assert not any(call in binary for call in (b"MPI_Init", b"MPI_Allreduce", b"MPI_Abort")), "MPI calls in a plain build"


def test_prediction_under_mpirun_comes_from_the_first_process(trainers, target, tmp_path):
    """--predict is the first process's alone: its output, or its one line on damaged input."""
    _, built, data, val = trainers
    assert mpirun(2, built[target], "--data", data, "--epochs", "1", "--save", tmp_path / "ckpt").returncode == 0
    predicted = mpirun(2, built[target], "--init-from", tmp_path / "ckpt", "--predict", val, "--out", tmp_path / "p.npy")
    assert predicted.returncode == 0 and predicted.stdout == "", predicted.stderr
    assert np.load(tmp_path / "p.npy").shape == (50, 10)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    x = np.load(val / "x.npy")
    x[-1, 0] = np.inf
    np.save(damaged / "x.npy", x)
    refused = mpirun(2, built[target], "--init-from", tmp_path / "ckpt", "--predict", damaged, "--out", tmp_path / "q.npy", timeout=60)
    assert refused.returncode == 2 and not (tmp_path / "q.npy").exists()
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {damaged}") and "finite" in lines[0], refused.stderr
