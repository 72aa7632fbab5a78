"""The C runtime as C: sg_kernels.h compiled on its own with every kernel, in
both precisions, warning-free under -Wall -Wextra -Werror and clean under
AddressSanitizer and UBSan, with kernels checked against plain loops
(tests/runtime/test_kernels.c); and what generated code takes from it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "templates" / "c" / "sg_kernels.h"


def kernels() -> list[str]:
    """Every SG_USE_<KERNEL> the header tests."""
    return sorted(set(re.findall(r"SG_USE_(\w+)", HEADER.read_text())))


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_the_runtime_builds_alone_without_warnings_and_its_kernels_are_right(precision, tmp_path):
    cc = shutil.which("cc") or pytest.skip("no C compiler")
    defines = [f"-DSG_USE_{k}" for k in kernels()] + ["-DSG_PARALLEL_ELEMENTS=65536"] + (["-DSG_FLOAT32"] if precision == "float32" else [])
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    build = subprocess.run([cc, *flags, *defines, "-I", str(HEADER.parent), str(ROOT / "tests" / "runtime" / "test_kernels.c"),
                            "-o", str(tmp_path / "test_kernels"), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(tmp_path / "test_kernels")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_the_runtime_pulls_in_what_its_kernels_call(precision, tmp_path):
    """A model defines only the kernels it calls itself: test_kernels.c's own
    calls alone must build (gemm, the parallel loops, the vectorised exp follow)."""
    cc = shutil.which("cc") or pytest.skip("no C compiler")
    called = ["MATMUL", "CONV2D", "LAYER_NORM", "SOFTMAX", "TANH"]
    defines = [f"-DSG_USE_{k}" for k in called] + ["-DSG_PARALLEL_ELEMENTS=65536", "-DSG_FORWARD_ONLY"] + (["-DSG_FLOAT32"] if precision == "float32" else [])
    build = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *defines, "-I", str(HEADER.parent),
                            str(ROOT / "tests" / "runtime" / "test_kernels.c"), "-o", str(tmp_path / "t"), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    assert subprocess.run([str(tmp_path / "t")], capture_output=True).returncode == 0


def test_float32_tanh_is_the_taylor_series_sympy_gives():
    """The runtime writes sg_tanh's coefficients out; they are tanh's series at 0."""
    x = sp.Symbol("x")
    series = sp.series(sp.tanh(x), x, 0, 17).removeO()
    want = [float(series.coeff(x, k)) for k in range(3, 17, 2)]
    body = HEADER.read_text().split("static real sg_tanh(real x)", 1)[1].split("\n}", 1)[0]
    got = [float(c) for c in re.findall(r"(-?\d\.\d+(?:e-?\d+)?)F", body.replace("- ", "-").replace("+ ", ""))][: len(want)]
    assert sorted(got) == pytest.approx(sorted(want), rel=1e-15)


@pytest.fixture(scope="module")
def npy_reader(tmp_path_factory):
    cc = shutil.which("cc") or pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("npy") / "read_npy"
    flags = ["-std=c99", "-D_POSIX_C_SOURCE=200809L", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-fsanitize=address,undefined"]
    build = subprocess.run([cc, *flags, "-I", str(HEADER.parent), str(ROOT / "tests" / "runtime" / "read_npy.c"), "-o", str(out), "-lm"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return out


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", "<i8", "<i4"])
def test_the_npy_reader_reads_what_numpy_writes(dtype, npy_reader, tmp_path):
    import numpy as np

    values = (np.arange(24).reshape(2, 3, 4) * (1 if dtype[1] == "i" else 0.25) - 5).astype(dtype)
    np.save(tmp_path / "a.npy", values)
    run = subprocess.run([str(npy_reader), str(tmp_path / "a.npy"), "int" if dtype[1] == "i" else "real"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "shape 2 3 4"
    assert [float(v) for v in lines[1:]] == values.ravel().astype(float).tolist()


def test_the_npy_reader_reads_every_kind_of_half(npy_reader, tmp_path):
    """float16, which the NumPy trainer reads: subnormals, the largest, signed zeros."""
    import numpy as np

    values = np.array([0.0, -0.0, 6e-8, -3e-5, 1 / 3, 65504, -65504], np.float16)
    np.save(tmp_path / "h.npy", values)
    run = subprocess.run([str(npy_reader), str(tmp_path / "h.npy"), "real"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    got = [float(v) for v in run.stdout.splitlines()[1:]]
    assert got == values.astype(float).tolist() and [str(v)[0] for v in got[:2]] == ["0", "-"]


@pytest.mark.parametrize("bad", ["truncated", "fortran", "big_endian", "not_npy"])
def test_the_npy_reader_refuses_bad_files_with_a_reason(bad, npy_reader, tmp_path):
    import numpy as np

    path = tmp_path / "a.npy"
    if bad == "truncated":
        np.save(path, np.ones((10, 10)))
        path.write_bytes(path.read_bytes()[:-8])
    elif bad == "fortran":
        np.save(path, np.asfortranarray(np.ones((3, 4))))
    elif bad == "big_endian":
        np.save(path, np.ones(3, ">f8"))
    else:
        path.write_bytes(b"hello, world\n" * 20)
    run = subprocess.run([str(npy_reader), str(path), "real"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout.startswith("refused: "), run.stdout + run.stderr


# -- the trainer (sg_train.h), around a model written by hand ------------------------------
@pytest.fixture(scope="module")
def toy_trainer(tmp_path_factory):
    """tests/runtime/toy_trainer.c built with -Werror and the sanitizers: the
    trainer's C alone, with no generated code but the flags' table."""
    from symgraph.codegen.flags import c_options

    cc = shutil.which("cc") or pytest.skip("no C compiler")
    folder = tmp_path_factory.mktemp("toy")
    rows = [f'    X({o["code"]}, "{o["name"]}", {"required_argument" if o["value"] else "no_argument"})' for o in c_options()]
    (folder / "flags.h").write_text("#define FLAGS(X) \\\n" + " \\\n".join(rows) + "\n")
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    build = subprocess.run([cc, *flags, "-I", str(folder), "-I", str(HEADER.parent), str(ROOT / "tests" / "runtime" / "toy_trainer.c"),
                            "-o", str(folder / "toy"), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return folder / "toy"


def toy_data(folder: Path, count: int = 40, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 0.25
    folder.mkdir()
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y.astype(np.float32))  # converted as it is read
    return x, y


def run_toy(toy, *args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(toy), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_trainer_trains_saves_resumes_evaluates_and_predicts_on_its_own(toy_trainer, tmp_path):
    import numpy as np

    x, y = toy_data(tmp_path / "data")
    run = run_toy(toy_trainer, "--data", "data", "--val", "data", "--epochs", 30, "--lr", 0.1, "--save", "ckpt", "--log", "log.csv", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    epochs = [line for line in run.stdout.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 30 and float(epochs[-1].split("val mse ")[1].split()[0]) < 1e-4, epochs[-1]
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,train_loss,val_loss,val_mse,lr,grad_norm,examples_per_second" and len(log) == 31
    np.testing.assert_allclose(np.load(tmp_path / "ckpt" / "w.npy"), [1.5, -2.0, 0.5], atol=1e-2)

    resumed = run_toy(toy_trainer, "--data", "data", "--init-from", "ckpt", "--epochs", 32, "--lr", 0.05, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch")] == ["31", "32"]

    evaluated = run_toy(toy_trainer, "--eval", "--init-from", "ckpt", "--val", "data", cwd=tmp_path)
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("eval  loss "), evaluated.stdout + evaluated.stderr

    predicted = run_toy(toy_trainer, "--predict", "data", "--init-from", "ckpt", "--out", "pred.npy", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    np.testing.assert_allclose(np.load(tmp_path / "pred.npy"), y, atol=1e-2)

    checked = run_toy(toy_trainer, "--gradcheck", "--data", "data", cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.count(" ok") == 2, checked.stdout


@pytest.mark.parametrize("args, message", [
    (["--lr"], "error: --lr needs a value"),
    (["--lr", "--epochs", "2"], "error: --lr needs a value"),
    (["--epoch", "2"], "error: unknown argument '--epoch' (see --help)"),
    (["--data", "missing"], "error: missing/x.npy: "),
    (["--data", "data", "--normalize", "y"], "error: --normalize y: the loss's target stays in its own units"),
    (["--data", "data", "--batch-size", "9"], "error: --batch-size 9 exceeds the compiled batch size 8"),
    (["--data", "data", "--optimizer", "lbfgs"], "error: --optimizer takes sgd, adam, adamw or rmsprop, got 'lbfgs'"),
    (["--data", "data", "--init-from", "data"], "error: --init-from data: is no checkpoint: it has neither symgraph-checkpoint.txt nor w.npy"),
])
def test_the_trainer_refuses_bad_arguments_in_one_line(args, message, toy_trainer, tmp_path):
    toy_data(tmp_path / "data")
    run = run_toy(toy_trainer, *args, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith(message) and run.stderr.count("\n") == 1, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing written
