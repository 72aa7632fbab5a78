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


def test_every_kernel_the_code_generator_can_use_is_in_the_runtime():
    from symgraph.codegen.c import KERNEL_NEEDS

    named = set(KERNEL_NEEDS) | {need for needs in KERNEL_NEEDS.values() for need in needs}
    assert {k.upper() for k in named} <= set(kernels())


def test_float32_tanh_is_the_taylor_series_sympy_gives():
    """The runtime writes sg_tanh's coefficients out; they are tanh's series at 0."""
    x = sp.Symbol("x")
    series = sp.series(sp.tanh(x), x, 0, 17).removeO()
    want = [float(series.coeff(x, k)) for k in range(3, 17, 2)]
    body = HEADER.read_text().split("static real sg_tanh(real x)", 1)[1].split("\n}", 1)[0]
    got = [float(c) for c in re.findall(r"(-?\d\.\d+(?:e-?\d+)?)F", body.replace("- ", "-").replace("+ ", ""))][: len(want)]
    assert sorted(got) == pytest.approx(sorted(want), rel=1e-15)
