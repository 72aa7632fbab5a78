"""Every class of bad input: exit 2, one ``error: FILE: NODE: ...`` line, nothing written."""

from __future__ import annotations


import pytest

import symgraph as sg
from symgraph.cli import main

GOOD = """
name: m
dims: {batch: 4, d: 3}
inputs:
  x: {shape: [batch, d]}
  y: {shape: [batch], dtype: int}
params:
  W: {shape: [d, 2]}
graph:
  logits: x @ W
  loss: cross_entropy(logits, y)
loss: loss
"""

CASES = {
    "malformed_yaml": ("name: m\ngraph: {a: [\n", "<yaml>", "malformed YAML"),
    "unknown_op": (GOOD.replace("x @ W", "frobnicate(x) @ W"), "logits", "unknown op 'frobnicate'"),
    "misspelt_op": (GOOD.replace("x @ W", "tanhh(x) @ W"), "logits", "unknown op 'tanhh'; did you mean tanh?"),
    "wrong_arity": (GOOD.replace("x @ W", "exp(x, W)"), "logits", "takes 1 tensor argument"),
    "unknown_keyword": (GOOD.replace("x @ W", "softmax(x @ W, dim=1)"), "logits", "unknown keyword 'dim'"),
    "unknown_name": (GOOD.replace("x @ W", "x @ V"), "logits", "unknown name 'V'"),
    "cycle": (GOOD.replace("x @ W", "x @ W + loss2").replace("loss: cross", "loss2: sum(logits)\n  loss: cross"), "logits", "cycle: logits -> loss2 -> logits"),
    "shape_mismatch": (GOOD.replace("[d, 2]", "[5, 2]"), "logits", "(batch=4, d=3) @ (5, 2)"),
    "bad_dim": (GOOD.replace("d: 3", "d: -3"), "dims.d", "positive integer"),
    "overflowing_dim": (GOOD.replace("d: 3", "d: 99999999999"), "dims.d", "overflows"),
    "non_scalar_loss": (GOOD.replace("loss: loss\n", "loss: logits\n"), "logits", "must be a scalar"),
    "missing_loss": (GOOD.replace("loss: loss\n", ""), "loss", "missing 'loss'"),
    "loss_not_a_node": (GOOD.replace("loss: loss\n", "loss: nothing\n"), "loss", "not a node"),
    "keyword_name": (GOOD.replace("logits", "while"), "while", "Python keyword"),
    "injection_name": (GOOD.replace("W: {shape", '"W; system(\\"rm\\")": {shape'), "params", "not an identifier"),
    "attribute_access": (GOOD.replace("x @ W", "x.__class__ @ W"), "logits", "attribute access"),
    "string_literal": (GOOD.replace("x @ W", "\"'import os' @ W\""), "logits", "numbers only"),
    "unknown_top_key": (GOOD + "extra: 1\n", "<spec>", "unknown top-level key"),
    "bad_init": (GOOD.replace("W: {shape: [d, 2]}", "W: {shape: [d, 2], init: magic}"), "W", "unknown init scheme"),
    "int_where_float": (GOOD.replace("x @ W", "y @ W"), "logits", "must be float"),
    "duplicate": (GOOD.replace("logits: x @ W", "logits: x @ W\n  x: exp(logits)"), "x", "defined twice"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_is_one_error_line(case, tmp_path, capsys):
    text, node, message = CASES[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    out = tmp_path / "out"
    code = main(["compile", str(spec), "-o", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {spec}: {node}: "), lines[0]
    assert message in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_missing_file_is_one_error_line(tmp_path, capsys):
    assert main(["grad", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'absent.yaml'}: <file>: cannot read")


def test_good_spec_compiles(tmp_path, capsys):
    spec = tmp_path / "good.yaml"
    spec.write_text(GOOD)
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".symgraph", "__init__.py", "model.py", "train.py"]


def test_recompiling_replaces_the_folder_it_wrote_whole(tmp_path):
    """A folder a compile wrote (its manifest lists the files), with the trainer
    built in it, is replaced whole: the C files go when NumPy's come."""
    spec = tmp_path / "good.yaml"
    spec.write_text(GOOD)
    out = tmp_path / "out"
    assert main(["compile", str(spec), "-o", str(out), "--target", "c"]) == 0
    (out / "train").write_text("a binary make built")
    assert main(["compile", str(spec), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".symgraph", "__init__.py", "model.py", "train.py"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_spec_text_outside_names_never_reaches_generated_code(target, tmp_path):
    """An init's comment and a file name that could close a comment or a string
    are reduced to canonical text before they are printed."""
    spec = tmp_path / 'x"""*evil.yaml'
    spec.write_text(GOOD.replace("W: {shape: [d, 2]}", 'W: {shape: [d, 2], init: "normal(0.1) # */ evil \\"\\"\\" evil"}'))
    assert main(["compile", str(spec), "-o", str(tmp_path / "out"), "--target", target]) == 0
    for path in (tmp_path / "out").iterdir():
        text = path.read_text()
        assert "evil" not in text.replace("x____evil.yaml", "") and '"""*' not in text, path.name


def test_model_planned_beyond_the_memory_limit_is_refused(tmp_path, capsys):
    spec = tmp_path / "good.yaml"
    spec.write_text(GOOD)
    assert main(["compile", str(spec), "-o", str(tmp_path / "out"), "--max-memory", "100"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec}: dims: the model needs ") and "more than the limit of 0.1 KiB" in err
    assert not (tmp_path / "out").exists()
    huge = GOOD.replace("batch: 4, d: 3", "batch: 400000, d: 300000")
    spec.write_text(huge)
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2  # default: the memory available now
    assert "the model needs" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["compile", str(spec), "-o", str(tmp_path / "out"), "--max-memory", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


@pytest.mark.parametrize(
    "expression, says",
    [("x @ W", "matmul(): inner sizes differ: (batch=16, hid2=16) @ (hid=32, k=3)"),
     ("x + W", "add(): shapes (batch=16, hid2=16) and (hid=32, k=3) do not broadcast"),
     ("tanh(x) @ W", "inner sizes differ: (batch=16, hid2=16) @ (hid=32, k=3)"),
     ("x @ V", "inner sizes differ: (batch=16, hid2=16) @ (7, k=3)")],
)
def test_shape_errors_name_the_dims(expression, says):
    """Sizes alone leave the reader to work out which dim is which: the
    declared dims, the batch axis, or the one dim of a size are named (not a
    size two dims share, nor a literal size)."""
    spec = ("dims: {batch: 16, hid: 32, hid2: 16, k: 3, seven: 7, also7: 7}\ninputs: {x: {shape: [batch, hid2]}}\n"
            f"params: {{W: {{shape: [hid, k]}}, V: {{shape: [7, k]}}}}\ngraph: {{h: '{expression}', loss: sum(h)}}\nloss: loss\n")
    with pytest.raises(sg.SpecError) as caught:
        sg.load(spec)
    assert says in str(caught.value), str(caught.value)
