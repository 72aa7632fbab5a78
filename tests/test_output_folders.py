"""Commands replace only what they wrote: ``compile -o`` a folder whose manifest
lists its files, a trainer's ``--save`` a checkpoint whose marker lists its
files. Anything else is refused in one line before any work, and loses nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from symgraph.cli import main

from test_errors import GOOD


def spec_in(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.yaml"
    spec.write_text(GOOD)
    (folder / "notes.txt").write_text("the user's")
    return spec


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(args: list[str], capsys, what: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and what in err, err


@pytest.mark.parametrize("where", ["cwd", "dot", "spec", "spec folder", "parent of cwd"])
def test_compile_refuses_a_folder_it_did_not_write(where, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    spec = spec_in(work)
    (work / "sub").mkdir()
    monkeypatch.chdir(work / "sub" if where == "parent of cwd" else work)
    out = {"cwd": str(work), "dot": ".", "spec": str(spec), "spec folder": str(spec.parent), "parent of cwd": ".."}[where]
    before = snapshot(tmp_path)
    refused(["compile", str(spec), "-o", out], capsys, "-o")
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no staging or .old folders


def test_compile_refuses_a_generated_folder_with_a_file_of_the_users(tmp_path, capsys):
    spec = spec_in(tmp_path / "work")
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    (out / "mine.py").write_text("keep me")
    refused(["compile", str(spec), "-o", str(out)], capsys, "mine.py")
    assert (out / "mine.py").read_text() == "keep me"


def test_compile_refuses_a_symbolic_link(tmp_path, capsys):
    spec = spec_in(tmp_path / "work")
    (tmp_path / "link").symlink_to(tmp_path / "work")
    refused(["compile", str(spec), "-o", str(tmp_path / "link")], capsys, "symbolic link")
    assert (tmp_path / "work" / "notes.txt").exists()


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_compiled_folder_honours_the_umask(mask, tmp_path):
    spec = spec_in(tmp_path / "work")
    previous = os.umask(mask)
    try:
        assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~mask


def test_concurrent_compiles_to_one_folder_leave_one_whole_result(tmp_path):
    spec = spec_in(tmp_path / "work")
    out = tmp_path / "out"
    codes = []
    threads = [threading.Thread(target=lambda t=t: codes.append(main(["compile", str(spec), "-o", str(out), "--target", t])))
               for t in ("numpy", "c", "numpy", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0, 0, 0]
    names = sorted(p.name for p in out.iterdir())
    c_files = [".symgraph", "Makefile", "model.c", "model.h", "model_f64.c", "model_f64.h", "sg_kernels.h", "sg_npy.h", "sg_train.h", "train.c"]
    assert names in ([".symgraph", "__init__.py", "model.py", "train.py"], c_files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "work"]


def trainer(tmp_path: Path, target: str) -> list[str]:
    spec = spec_in(tmp_path / "spec")
    out = tmp_path / target
    assert main(["compile", str(spec), "-o", str(out), "--target", target, "--dtype", "float64"]) == 0
    if target == "numpy":
        return [sys.executable, str(out / "train.py")]
    subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O1"], check=True, capture_output=True)
    return [str(out / "train")]


def data_folder(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((6, 3)))
    np.save(folder / "y.npy", rng.integers(0, 2, 6))
    return folder


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_trainers_refuse_to_save_over_what_they_did_not_write(target, tmp_path):
    train = trainer(tmp_path, target)
    data = data_folder(tmp_path / "data")
    (tmp_path / "file.txt").write_text("the user's")
    messages = {}
    for name, where in (("data", data), ("cwd", tmp_path), ("file", tmp_path / "file.txt")):
        before = snapshot(tmp_path / "data")
        done = subprocess.run([*train, "--data", str(data), "--epochs", "1", "--save", str(where)], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stderr.startswith("error: --save") and done.stderr.count("\n") == 1, done.stderr
        assert done.stdout == ""  # refused before training
        assert snapshot(tmp_path / "data") == before and (tmp_path / "file.txt").read_text() == "the user's"
        messages[name] = done.stderr
    assert "x.npy" in messages["data"] and "is a file" in messages["file"]
    ckpt = tmp_path / "ckpt"
    for _ in range(2):  # its own checkpoint it replaces
        done = subprocess.run([*train, "--data", str(data), "--epochs", "1", "--save", str(ckpt)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    (ckpt / "extra.npy").write_bytes(b"")
    done = subprocess.run([*train, "--data", str(data), "--epochs", "1", "--save", str(ckpt)], capture_output=True, text=True)
    assert done.returncode == 2 and "extra.npy" in done.stderr and (ckpt / "extra.npy").exists()


def test_both_trainers_refuse_with_the_same_words(tmp_path):
    data = data_folder(tmp_path / "data")
    said = set()
    for target in ("numpy", "c"):
        train = trainer(tmp_path / target, target)
        done = subprocess.run([*train, "--data", str(data), "--save", str(data)], capture_output=True, text=True)
        said.add(done.stderr)
    assert len(said) == 1, said


@pytest.mark.parametrize("command", ["draw", "report"])
def test_file_outputs_never_replace_a_spec_or_a_folder(command, tmp_path, capsys):
    spec = spec_in(tmp_path / "work")
    before = spec.read_bytes()
    refused([command, str(spec), "-o", str(spec.with_suffix(".html" if command == "report" else ".dot").parent / "notes.txt")], capsys, "-o")
    (tmp_path / "work" / "picture.dot").write_text("my own notes")
    refused([command, str(spec), "-o", str(tmp_path / "work" / ("picture.dot" if command == "draw" else "spec.yaml"))], capsys, "-o")
    refused([command, str(spec), "-o", str(tmp_path / "work")], capsys, "-o")
    assert spec.read_bytes() == before and (tmp_path / "work" / "picture.dot").read_text() == "my own notes"
    out = tmp_path / ("out.dot" if command == "draw" else "out.html")
    assert main([command, str(spec), "-o", str(out)]) == 0
    assert main([command, str(spec), "-o", str(out)]) == 0  # its own output it replaces
