"""The build cache: it loads only what it built, rebuilds what was damaged,
refuses a folder others can write, and reports every failure in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph import native
from symgraph.cli import main

from test_errors import GOOD

SPEC = "name: cached\ndims: {batch: 2}\ninputs: {x: {shape: [batch, 3]}}\nparams: {w: {shape: [3]}}\ngraph: {loss: 'sum(x * w)'}\nloss: loss\n"


def entry(cache: Path) -> Path:
    (folder,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    return folder


def loss_of(model) -> float:
    return model.loss_and_grads({"w": np.ones(3)}, {"x": np.ones((2, 3))})[0]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SYMGRAPH_CACHE", str(folder))
    sg.compile(sg.load(SPEC), target="c", dtype="float64")
    return folder


@pytest.mark.parametrize("damage", ["truncate", "delete", "replace", "delete digest"])
def test_a_damaged_entry_is_built_again(damage, cache):
    folder = entry(cache)
    library = folder / native.LIBRARY
    if damage == "truncate":
        library.write_bytes(library.read_bytes()[:1000])
    elif damage == "delete":
        library.unlink()
    elif damage == "replace":  # another valid library, planted under this key
        library.write_bytes(library.read_bytes() + b"\0")
    else:
        (folder / native.DIGEST).unlink()
    assert loss_of(sg.compile(sg.load(SPEC), target="c", dtype="float64")) == 6.0
    assert native.intact(folder)


def test_a_truncated_library_never_kills_the_process(cache, tmp_path):
    """The truncation that made dlopen's mapping raise SIGBUS: run in a child, it ends normally."""
    library = entry(cache) / native.LIBRARY
    library.write_bytes(library.read_bytes()[: len(library.read_bytes()) // 2])
    code = f"import symgraph as sg; m = sg.compile(sg.load({SPEC!r}), target='c', dtype='float64'); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_cache_others_can_write_is_refused(mode, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    monkeypatch.setenv("SYMGRAPH_CACHE", str(folder))
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    assert main(["check", str(spec), "--target", "c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the build cache") and err.count("\n") == 1, err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("problem", ["a file", "no compiler", "a broken compiler"])
def test_build_problems_are_one_error_line(problem, tmp_path, monkeypatch, capsys):
    native.compiler_version.cache_clear()
    if problem == "a file":
        (tmp_path / "cache").write_text("not a folder")
        monkeypatch.setenv("SYMGRAPH_CACHE", str(tmp_path / "cache"))
    else:
        monkeypatch.setenv("SYMGRAPH_CACHE", str(tmp_path / "cache"))
        if problem == "no compiler":
            monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        else:
            broken = tmp_path / "cc"
            broken.write_text("#!/bin/sh\\necho 'cc 1.0'\\nexit 0\\n")
            broken.chmod(0o755)
            monkeypatch.setenv("CC", str(broken))
    spec = tmp_path / "spec.yaml"
    spec.write_text(GOOD)
    try:
        assert main(["check", str(spec), "--target", "c"]) == 2
    finally:
        native.compiler_version.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
