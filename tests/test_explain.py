"""Derived gradients as printed by ``sg.explain`` and ``symgraph grad``."""

from __future__ import annotations

from pathlib import Path

import symgraph as sg
from symgraph.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_lecture_gradients_with_values(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "dL/da = c = -2",
        "dL/db = 2*c = -4",
        "dL/dc = a + 2*b = 5",
    ]


def test_wrt_selects_one_gradient(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--wrt", "c"]) == 0
    assert capsys.readouterr().out.strip() == "dL/dc = a + 2*b = 5"


def test_latex(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--latex"]) == 0
    out = capsys.readouterr().out
    assert r"\frac{\partial L}{\partial b} &= 2 c = -4" in out
    assert sg.explain(sg.load(ROOT / "examples" / "slide.yaml"))._repr_latex_().startswith("$$")


def test_logistic_regression_bias_gradient_is_the_textbook_mean():
    text = str(sg.explain(sg.load(ROOT / "examples" / "logreg.yaml"), wrt="b"))
    assert "dz = (sigmoid(z) - y)/batch" in text.splitlines()
    assert "db = mean(sigmoid(z) - y, axis=0)" in text.splitlines()


def test_mlp_gradient_program_reads_like_the_textbook():
    lines = str(sg.explain(sg.load(ROOT / "examples" / "mlp.yaml"))).splitlines()
    assert "dlogits = (softmax(logits) - onehot(y))/batch" in lines
    assert "dW2 = h.T @ dlogits" in lines
    assert "dh = dlogits @ W2.T" in lines
    assert "dW1 = x.T @ dh_2" in lines


def test_unknown_wrt_is_bad_input(capsys):
    assert main(["grad", str(ROOT / "examples" / "slide.yaml"), "--wrt", "zzz"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
