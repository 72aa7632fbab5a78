"""The remaining CLI verbs: check on both targets (and that it can fail), draw, compile --report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from symgraph.cli import main
from symgraph.ops import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def test_check_passes_on_an_example(capsys):
    assert main(["check", str(ROOT / "examples" / "logreg.yaml"), "--target", "all"]) == 0
    out = capsys.readouterr().out
    assert "(numpy, float64)" in out and "(c, float64)" in out and out.count(" ok") == 4


def test_check_fails_when_a_vjp_is_wrong(monkeypatch, capsys):
    def wrong(g, node, cotangent):
        return (cotangent,)  # claims d tanh(u)/du = 1

    monkeypatch.setitem(REGISTRY, "tanh", dataclasses.replace(REGISTRY["tanh"], vjp=wrong))
    assert main(["check", str(ROOT / "examples" / "nlm.yaml"), "--target", "c"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_draw_writes_dot_with_every_node(tmp_path):
    out = tmp_path / "mlp.dot"
    assert main(["draw", str(ROOT / "examples" / "mlp.yaml"), "-o", str(out), "--grad"]) == 0
    text = out.read_text()
    for node in ("W1", "logits", "loss", "dW1", "dlogits"):
        assert f'"{node}" [label=' in text


def test_compile_report_prints_the_memory_plan(tmp_path, capsys):
    assert main(["compile", str(ROOT / "examples" / "mlp.yaml"), "--target", "c", "-o", str(tmp_path / "c"), "--report"]) == 0
    out = capsys.readouterr().out
    assert "loss_and_grads:" in out and "arena (peak):" in out
    assert {p.name for p in (tmp_path / "c").iterdir()} == {".symgraph", "Makefile", "model.c", "model.h", "model_f64.c", "model_f64.h", "sg_kernels.h", "sg_npy.h", "sg_train.h", "train.c"}


def test_unknown_target_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse: a usage error
        main(["compile", str(ROOT / "examples" / "mlp.yaml"), "--target", "fortran", "-o", str(tmp_path / "f")])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_ops_lists_every_public_op_with_its_signature(capsys):
    import inspect

    import symgraph as sg

    assert main(["ops"]) == 0
    listed = capsys.readouterr().out.splitlines()
    public = sorted(n for n, op in REGISTRY.items() if op.public)
    assert [line.split("(")[0] for line in listed] == public
    assert any(line.startswith("conv1d(x, K, stride=1, padding=0)") for line in listed)
    assert main(["ops", "max_pool1d"]) == 0 and capsys.readouterr().out.startswith("max_pool1d(x, size, stride=None)")
    assert str(inspect.signature(sg.max_pool1d)) == "(x, /, size, stride=None)"
    assert main(["ops", "tanhh"]) == 2 and "did you mean tanh?" in capsys.readouterr().err
