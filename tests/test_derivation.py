"""Derivation comments: every backward statement of the generated code says
which chain-rule step it implements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import symgraph as sg
from symgraph.codegen import build_program, render

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))

TANH = """
name: tanh_layer
dims: {batch: 4}
inputs: {x: {shape: [batch, 3]}, y: {shape: [batch, 2]}}
params: {W: {shape: [3, 2], init: xavier_uniform}}
graph:
  u: x @ W
  h: tanh(u)
  loss: mse(h, y)
loss: loss
"""


def sources(g):
    program = build_program(g, "float64")
    return program, render(program, "numpy")["model.py"], render(program, "c")["model.c"]


def test_tanh_step_reads_like_the_lecture():
    _, py, c = sources(sg.load(TANH))
    assert "    # dL/du = dL/dh*(1 - h**2)   [d tanh(u)/du]\n    du = " in py
    assert "/* dL/du = dL/dh*(1 - h**2)   [d tanh(u)/du] */" in c
    assert "# dL/dW = x.T @ dL/du   [d(x @ W)/dW]" in py


def test_lecture_backward_code():
    _, py, c = sources(sg.load(ROOT / "examples" / "slide.yaml"))
    assert "# dL/dc = a + d\n    e = a + d" in py
    assert "# dL/db = 2*dL/dd   [d(2*b)/db]\n    db = 2.0*c" in py
    assert "/* dL/db = 2*dL/dd   [d(2*b)/db] */" in c


def backward_function(text: str, start: str) -> list[str]:
    lines = text[text.index(start):].splitlines()
    return lines[: next(i for i, line in enumerate(lines[1:], 1) if line and not line[0].isspace() and line not in ("{", "}"))]


def c_backward(c: str) -> list[str]:
    """The body of the C function that runs forward and backward (loss_and_grads and sgd_step call it)."""
    return backward_function(c, "static int sg_train(")


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_backward_statement_has_its_step(example):
    program, py, c = sources(sg.load(ROOT / "examples" / f"{example}.yaml"))
    g = program.train_graph
    backward = {n for n, data in g.nx.nodes(data=True) if "chain" in data} | set(g.cotangents.values())
    backward -= set(g.params) | set(g.inputs)
    assert backward
    for lines, pattern, comment in (
        (backward_function(py, "def loss_and_grads"), r"    (\w+) = ", "    # "),
        (c_backward(c), r"    real \*(\w+) = ", "    /* "),
    ):
        checked = 0
        for i, line in enumerate(lines):
            m = re.match(pattern, line)
            if m and m.group(1) in backward:
                # a statement may take several lines; its comments come first
                j = i - 1
                while j > 0 and not lines[j].startswith(comment):
                    other = re.match(pattern, lines[j])
                    if other and other.group(1) in g.nx:
                        break
                    j -= 1
                block = []  # the comment lines right above the statement
                while j > 0 and lines[j].startswith(comment):
                    block.append(lines[j])
                    j -= 1
                assert any(c.startswith((comment + "dL/d", comment + "part of dL/d")) for c in block), (
                    f"{example}: no derivation above {line!r}"
                )
                checked += 1
        assert checked >= 2, (example, comment)


# Words of the comments' own phrasing, and the notation around names.
PHRASES = re.compile(
    r"part of |the chain rule at |\bthrough |sum over the uses of |one product that starts from the bias|"
    r"in place of |a view of |, added in as it is computed: nothing reads \w+ after this|"
    r"the step of .*|set below, with |the spec's \w+|holds the spec's \w+|"
    r"-= lr \*|\bbatch\b|\bpi\b|\.T\b|\bn\b|\w+=\w*|[A-Za-z_]\w*\(|dL/d|\[d|/d|\b\d+(\.\d*)?(e-?\d+)?\b"
)


def named_in(comment: str) -> set[str]:
    """The names a comment uses, once its phrasing and notation are taken out."""
    return set(re.findall(r"[A-Za-z_]\w*", PHRASES.sub(" ", comment)))


def comment_names(text: str, marker: str) -> tuple[set[str], set[str]]:
    """(names in the derivation comments, identifiers in the code) of generated source."""
    comments, code = set(), set()
    for line in text.splitlines():
        body, _, note = line.partition(marker)
        if marker == "/*":
            note = note.split("*/")[0]
        code |= set(re.findall(r"[A-Za-z_]\w*", body))
        if "dL/d" in note:
            comments |= named_in(note)
    return comments, code


SHAPES = """
name: where_names
dims: {batch: 4, d: 3, k: 2}
inputs: {x: {shape: [batch, d]}, y: {shape: [batch], dtype: int}}
params: {W1: {shape: [d, k]}, b1: {shape: [k]}, W2: {shape: [k, k]}}
graph:
  h: tanh(x @ W1 + b1) * 2
  h2: relu(h @ W2 - h)
  loss: cross_entropy(h2 * h2, y)
loss: loss
"""


@pytest.mark.parametrize("spec", [*(ROOT / "examples" / f"{e}.yaml" for e in EXAMPLES), TANH, SHAPES])
def test_comments_name_only_what_the_code_or_the_spec_names(spec):
    """dL/dh_1 above a statement where no h_1 exists, or [d tanh(h2_2)/dh2_2],
    sent the reader looking for a variable that is nowhere."""
    g = sg.load(spec)
    program, py, c = sources(g)
    spec_names = {n for n in g.nx if g.op(n) in ("input", "param") or g.nx.nodes[n].get("named")} | set(g.dims)
    for text, marker in ((py, "#"), (c, "/*")):
        start = text.index("def forward" if marker == "#" else f"int {g.name}_forward")
        comments, code = comment_names(text[start:], marker)
        missing = comments - code - spec_names
        assert not missing, (marker, sorted(missing))


def test_the_check_finds_a_comment_naming_a_missing_variable():
    comments, code = comment_names("    /* dL/dW1 = x.T @ dL/dh_1   [d(x @ W1)/dW1] */\n    dW1 = x.T @ dh_2\n", "/*")
    assert comments == {"W1", "x", "h_1"} and comments - code == {"W1", "h_1"}  # W1: in the spec
