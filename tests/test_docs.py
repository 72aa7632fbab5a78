"""The documentation cannot rot: the reference pages are what the code writes,
name every op, spec key, command-line flag and trainer flag, every op's
example compiles, the site builds in strict mode, and every command and code
block of the tutorial and the README runs, in order."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.builder import OPTIMIZERS, TRAIN_KEYS
from symgraph.cli import build_parser
from symgraph.init import SCHEMES
from symgraph.metrics import METRICS
from symgraph.reference import example_spec, pages, public_ops
from symgraph.spec import LEAF_KEYS, TOP_KEYS

from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def written() -> dict[str, str]:
    return pages()


def test_reference_pages_are_what_the_code_writes(written):
    for name, text in written.items():
        assert (DOCS / name).read_text(encoding="utf-8") == text, f"docs/{name} is stale: run python -m symgraph.reference docs"


def test_every_op_spec_key_and_flag_is_in_the_reference(written):
    ops = written["reference/ops.md"]
    for op in public_ops():
        assert f"\n## {op.name}\n" in ops, op.name
    spec = written["reference/spec.md"]
    for key in [*TOP_KEYS, *LEAF_KEYS["inputs"], *LEAF_KEYS["params"], *TRAIN_KEYS, *SCHEMES, *METRICS, *OPTIMIZERS]:
        assert f"`{key}`" in spec, key
    cli = written["reference/cli.md"]
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert f"## symgraph {name}\n" in cli, name
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in cli or flag in ("-h", "--help"), (name, flag)
    trainers = written["reference/trainers.md"]
    for template in ("numpy/train.py.j2", "c/sg_train.h"):
        flags = set(re.findall(r'"(--[a-z][a-z-]+)"', (ROOT / "templates" / template).read_text()))
        assert flags, template
        for flag in flags:
            assert flag in trainers, (template, flag)


@pytest.mark.parametrize("op", [op.name for op in public_ops()])
def test_every_ops_example_compiles_and_runs(op, rng):
    from symgraph.ops import REGISTRY

    g = sg.load(example_spec(REGISTRY[op]))
    for target in ("numpy", "c"):
        sg.codegen.render(sg.codegen.build_program(g), target)
    model = sg.compile(g, target="numpy", dtype="float64")
    inputs = {}
    for name, shape in model.inputs.items():
        inputs[name] = rng.integers(0, 3, shape) if g.dtype(name) == "int" else rng.uniform(0.5, 1.5, shape)
    params = {name: rng.uniform(0.5, 1.5, shape) for name, shape in model.params.items()}  # in every op's domain
    loss, grads = model.loss_and_grads(params, inputs)
    assert np.isfinite(loss) and set(grads) == set(model.params)


def test_the_site_builds_in_strict_mode(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(BIN)) or require_tool("mkdocs", "mkdocs-material (pip install '.[docs]')")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "tutorial" / "index.html").exists() and (tmp_path / "site" / "reference" / "ops" / "index.html").exists()


# -- running the documented commands -----------------------------------------------------------
FENCE = re.compile(r'^```(\w*)(?:\s+title="([^"]+)")?\s*$')


def blocks(path: Path) -> list[tuple[str, str | None, str]]:
    """(language, file title or None, text) of every fenced block to run, in order;
    a block right after a ``<!-- not run`` comment is left out."""
    found, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match and match.group(1):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            skipped = i > 0 and lines[i - 1].startswith("<!-- not run")
            if not skipped:
                found.append((match.group(1), match.group(2), "\n".join(lines[i + 1 : end]) + "\n"))
            i = end
        i += 1
    return found


def run_blocks(path: Path, where: Path) -> int:
    """Run ``path``'s blocks in ``where``: titled blocks are written as files,
    sh blocks run in bash (a cd carries over), untitled python blocks in Python;
    text and yaml blocks without a title are shown output. Returns how many ran."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    cwd, ran = where, 0
    for language, title, text in blocks(path):
        if title:
            (cwd / title).write_text(text, encoding="utf-8")
        elif language == "sh":
            state = where / ".cwd"
            script = f"set -euo pipefail\ncd {str(cwd)!r}\n{text}\npwd > {str(state)!r}\n"
            done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=600)
            assert done.returncode == 0, f"{path.name}: {text}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            cwd = Path(state.read_text().strip())
        elif language == "python":
            done = subprocess.run([sys.executable, "-c", text], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
            assert done.returncode == 0, f"{path.name}: {text}\n{done.stderr[-3000:]}"
        else:
            continue
        ran += 1
    return ran


@pytest.mark.needs_cc
def test_the_tutorial_runs_as_written(tmp_path):
    assert run_blocks(DOCS / "tutorial.md", tmp_path) >= 10
    iris = tmp_path / "iris"
    assert (iris / "ckpt_c" / "W1.npy").exists() and (iris / "iris.html").exists() and (iris / "curve.png").exists()


@pytest.mark.needs_cc
def test_the_readme_runs_as_written(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("data"))
    assert run_blocks(ROOT / "README.md", tmp_path) >= 2
    assert (tmp_path / "slide.html").exists() and (tmp_path / "ckpt" / "w.npy").exists()


def test_the_block_runner_skips_what_it_is_told_to(tmp_path):
    page = tmp_path / "page.md"
    page.write_text('<!-- not run: CI runs it -->\n```sh\nexit 1\n```\n\n```sh\necho ran > out.txt\n```\n\n```text\nnot a command\n```\n')
    assert run_blocks(page, tmp_path) == 1 and (tmp_path / "out.txt").read_text() == "ran\n"
