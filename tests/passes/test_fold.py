from __future__ import annotations

import symgraph as sg
from symgraph.ir import verify
from symgraph.passes import eliminate_dead_code, fold_constants, fold_double_negation


def test_folds_scalar_arithmetic_and_identities():
    g = sg.load("params: {a: {shape: [3]}}\ngraph:\n  L: sum((2 * 3) * a * 1 + 0)\nloss: L\n")
    out = verify(eliminate_dead_code(fold_constants(g)))  # folding orphans the old constants
    ops = sorted(out.op(n) for n in out.nx)
    assert ops == ["const", "mul", "param", "sum"]
    (six,) = [n for n in out.nx if out.op(n) == "const"]
    assert out.attrs(six)["value"] == 6.0


def test_keeps_identities_that_broadcast():
    g = sg.load("params: {a: {shape: []}}\ninputs: {x: {shape: [3]}}\ngraph:\n  L: sum(a + 0 * x)\nloss: L\n")
    out = fold_constants(g)
    assert len(out.nx) == len(g.nx)  # 0 * x has x's shape: folding it away would change L's shape


def test_batch_sized_constants_are_not_folded():
    g = sg.load("dims: {batch: 4}\ninputs: {x: {shape: [batch]}}\ngraph:\n  L: sum(x) / (batch * 1)\nloss: L\n")
    out = fold_constants(g)
    assert any(out.op(n) == "const" and repr(out.attrs(n)["value"]) == "batch=4" for n in out.nx)


def test_double_negation():
    g = sg.load("params: {a: {shape: [2]}}\ngraph:\n  L: sum(-(-a))\nloss: L\n")
    out = verify(eliminate_dead_code(fold_double_negation(g)))
    assert [out.op(n) for n in out.order()] == ["param", "sum"]
