"""A user's names are the user's: every identifier but Python's keywords names
a dim, input, param or node, in both targets, with comments tying mangled
variables back to the spec."""

from __future__ import annotations

import builtins
import keyword
import re
import subprocess
import sys

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main
from symgraph.names import C_KEYWORDS, C_LIBRARY, NUMPY_MODULE, RUNTIME, emittable

# Every name the spec language refused before names were mangled (Python's
# keywords aside, which an expression cannot hold), and names users write.
FORMERLY_RESERVED = sorted(
    (C_KEYWORDS | C_LIBRARY | RUNTIME | NUMPY_MODULE | {n for n in dir(builtins) if n.isidentifier()}
     | {"sg_x", "SG_Y", "__z", "_Q", "input", "filter", "max", "sum", "len", "main", "x", "dx", "info", "params_info"})
    - set(keyword.kwlist)
)
CHUNK = 60


def spec_text(names: list[str], model: str) -> str:
    """A classifier whose dims, inputs, params and nodes are all named from ``names``."""
    width, features, labels, weight, bias, *rest = names
    scalars, nodes = rest[: len(rest) // 3], rest[len(rest) // 3 :]
    lines = [
        f"name: {model}",
        f"dims: {{batch: 4, {width}: 3}}",
        "inputs:",
        f"  {features}: {{shape: [batch, {width}]}}",
        f"  {labels}: {{shape: [batch], dtype: int}}",
        "params:",
        f"  {weight}: {{shape: [{width}, 3], init: xavier_uniform}}",
        f"  {bias}: {{shape: [3], init: zeros}}",
        *(f"  {s}: {{shape: [], init: 'constant({0.5 + 0.01 * i})'}}" for i, s in enumerate(scalars)),
        "graph:",
        f"  {nodes[0]}: tanh({features} @ {weight} + {bias})",
    ]
    functions = ["tanh", "sigmoid", "exp", "relu", "abs"]
    for i, node in enumerate(nodes[1:-1], 1):
        fn, scale = functions[i % len(functions)], scalars[i % len(scalars)]
        inner = f"{nodes[i - 1]} * {scale}" if fn != "exp" else f"{nodes[i - 1]} * {scale} * 0.1"
        lines.append(f"  {node}: {fn}({inner}) + {nodes[i - 1]} * 0.5")
    lines += [f"  {nodes[-1]}: cross_entropy({nodes[-2]}, {labels})", f"loss: {nodes[-1]}", f"outputs: [{nodes[-2]}, {nodes[0]}]"]
    return "\n".join(lines) + "\n"


def chunks() -> list:
    found = []
    for start in range(0, len(FORMERLY_RESERVED), CHUNK):
        part = FORMERLY_RESERVED[start : start + CHUNK]
        found.append(pytest.param(part + FORMERLY_RESERVED[: 12 - len(part)] if len(part) < 12 else part, id=f"{part[0]}..{part[-1]}"))
    return found


def test_the_formerly_reserved_names_are_many_and_are_all_used():
    used = [n for chunk in chunks() for n in chunk.values[0]]
    assert len(FORMERLY_RESERVED) > 200 and set(FORMERLY_RESERVED) <= set(used)
    assert {"ids", "n", "mask", "int", "double", "main", "params", "seed", "lr", "state", "step", "data"} <= set(used)


@pytest.mark.needs_cc
@pytest.mark.parametrize("names", chunks())
def test_a_spec_named_entirely_with_formerly_reserved_words_compiles_checks_and_trains(names, tmp_path):
    model = names[-1]
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(names, model))
    assert main(["check", str(spec), "--target", "all"]) == 0

    rng = np.random.default_rng(0)
    features, labels = names[1], names[2]
    for part, count in (("train", 16), ("val", 8)):
        (tmp_path / part).mkdir()
        np.save(tmp_path / part / f"{features}.npy", rng.normal(size=(count, 3)).astype(np.float32))
        np.save(tmp_path / part / f"{labels}.npy", rng.integers(0, 3, count))
    lines = {}
    for target in ("numpy", "c"):
        out = tmp_path / target
        assert main(["compile", str(spec), "--target", target, "-o", str(out)]) == 0
        if target == "c":
            build = subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O1 -Wall -Wextra -Werror"], capture_output=True, text=True)
            assert build.returncode == 0, build.stderr[-3000:]
            train = [str(out / "train")]
        else:
            train = [sys.executable, str(out / "train.py")]
        result = subprocess.run([*train, "--data", tmp_path / "train", "--val", tmp_path / "val", "--epochs", "2", "--save", tmp_path / f"ckpt_{target}"],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        lines[target] = [re.sub(r"\s+\S+ ex/s", "", line) for line in result.stdout.splitlines()]
        saved = {p.name for p in (tmp_path / f"ckpt_{target}").iterdir()}
        assert {f"{p}.npy" for p in names[3:5]} <= saved

        text = "".join(p.read_text() for p in out.iterdir() if p.suffix in (".py", ".c", ".h"))
        for name in names:  # each mangled variable's declaration names the spec's name
            if not emittable(name) and re.search(rf"\b{re.escape(name)}_\b", text):
                assert f"the spec's {name}" in text or f"holds the spec's {name}" in text, name
    assert lines["numpy"] == lines["c"]


@pytest.mark.parametrize("name", ["class", "None", "lambda", "yield"])
def test_python_keywords_are_refused_saying_why(name, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"inputs: {{x: {{shape: [2]}}}}\ngraph: {{{name}: x * 2, loss: 'sum(x)'}}\nloss: loss\n")
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Python keyword" in err and name in err and err.count("\n") == 1, err


def test_a_model_named_like_the_generated_code_gets_a_prefix_of_its_own():
    from symgraph.names import c_prefix

    assert c_prefix("mlp") == "mlp" and c_prefix("int") == "int"
    assert c_prefix("sg") == "model_sg" and c_prefix("sg_net") == "model_sg_net" and c_prefix("_x") == "model__x"


@pytest.mark.needs_cc
@pytest.mark.parametrize("model", ["sg", "int", "main", "SG_net"])
def test_such_models_build(model):
    g = sg.load(f"name: {model}\ndims: {{batch: 2}}\ninputs: {{x: {{shape: [batch]}}}}\nparams: {{w: {{shape: [], init: ones}}}}\n"
                "graph: {loss: 'sum(x * w)'}\nloss: loss\n")
    loss, grads = sg.compile(g, target="c", dtype="float64").loss_and_grads({"w": np.array(2.0)}, {"x": np.array([1.0, 2.0])})
    assert loss == pytest.approx(6.0) and grads["w"] == pytest.approx(3.0)


def test_mangled_names_avoid_every_other_name():
    g = sg.load("dims: {batch: 2}\ninputs: {int: {shape: [batch]}, int_: {shape: [batch]}}\n"
                "graph: {loss: 'sum(int * int_)'}\nloss: loss\n")
    program = sg.compile(g, target="numpy", dtype="float64").program
    assert program.mangled == {"int": "int_1"}
    assert [leaf.var for leaf in program.inputs] == ["int_1", "int_"]


def test_the_memory_report_ties_mangled_buffers_to_the_spec(capsys, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("dims: {batch: 4}\ninputs: {x: {shape: [batch, 3]}}\nparams: {W: {shape: [3, 3]}}\n"
                    "graph: {max: tanh(x @ W), sum: max * max + x, loss: mean(sum)}\nloss: loss\n")
    assert main(["compile", str(spec), "--target", "c", "-o", str(tmp_path / "c"), "--report"]) == 0
    out = capsys.readouterr().out
    assert "sum_ (the spec's sum)" in out, out


@pytest.mark.needs_cc
@pytest.mark.parametrize("target", ["numpy", "c"])
def test_params_named_like_checkpoint_files_round_trip(target, tmp_path):
    """A param named state (once the file of the training state), optimizer,
    training or normalize saves and resumes like any other."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("dims: {batch: 4}\ninputs: {x: {shape: [batch, 3]}, y: {shape: [batch], dtype: int}}\n"
                    "params: {state: {shape: [3, 3], init: he_normal}, optimizer: {shape: [3]}, training: {shape: [3, 2]}, normalize: {shape: [2]}}\n"
                    "graph: {h: 'tanh(x @ state + optimizer)', loss: 'cross_entropy(h @ training + normalize, y)'}\nloss: loss\n"
                    "train: {optimizer: adam, lr: 0.1, epochs: 2}\n")
    rng = np.random.default_rng(0)
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "x.npy", rng.normal(size=(12, 3)))
    np.save(tmp_path / "d" / "y.npy", rng.integers(0, 2, 12))
    assert main(["compile", str(spec), "--target", target, "-o", str(tmp_path / "out")]) == 0
    if target == "c":
        subprocess.run(["make", "-s", "-C", str(tmp_path / "out"), "CFLAGS=-O1"], check=True, capture_output=True)
    train = [str(tmp_path / "out" / "train")] if target == "c" else [sys.executable, str(tmp_path / "out" / "train.py")]
    first = subprocess.run([*train, "--data", tmp_path / "d", "--save", tmp_path / "ck"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert np.load(tmp_path / "ck" / "state.npy").shape == (3, 3)
    again = subprocess.run([*train, "--data", tmp_path / "d", "--epochs", "3", "--init-from", tmp_path / "ck"], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.split()[:2] == ["epoch", "3"], again.stderr
    found = sg.load_checkpoint(tmp_path / "ck")
    assert set(found.params) == {"state", "optimizer", "training", "normalize"} and found.epochs == 2
