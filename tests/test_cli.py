"""The remaining CLI verbs: check (and that it can fail), draw, unavailable targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from symgraph.cli import main
from symgraph.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def test_check_passes_on_an_example(capsys):
    assert main(["check", str(ROOT / "examples" / "logreg.yaml")]) == 0
    out = capsys.readouterr().out
    assert "w " in out and out.count(" ok") == 2


def test_check_fails_when_a_vjp_is_wrong(monkeypatch, capsys):
    def wrong(g, node, cotangent):
        return (cotangent,)  # claims d tanh(u)/du = 1

    monkeypatch.setitem(REGISTRY, "tanh", dataclasses.replace(REGISTRY["tanh"], vjp=wrong))
    assert main(["check", str(ROOT / "examples" / "nlm.yaml")]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_draw_writes_dot_with_every_node(tmp_path):
    out = tmp_path / "mlp.dot"
    assert main(["draw", str(ROOT / "examples" / "mlp.yaml"), "-o", str(out), "--grad"]) == 0
    text = out.read_text()
    for node in ("W1", "logits", "loss", "dW1", "dlogits"):
        assert f'"{node}" [label=' in text


def test_unavailable_target_is_bad_input(tmp_path, capsys):
    assert main(["compile", str(ROOT / "examples" / "mlp.yaml"), "--target", "c", "-o", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "c").exists()
