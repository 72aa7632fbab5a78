from __future__ import annotations

import symgraph as sg
from symgraph.ir import verify
from symgraph.passes import eliminate_common_subexpressions


def structure(g):
    return sorted((n, g.op(n), tuple(g.args(n))) for n in g.nx)


def test_merges_equal_nodes_and_keeps_the_first():
    g = sg.load("params: {a: {shape: [2]}, b: {shape: [2]}}\ngraph:\n  u: exp(a) * b\n  v: b * exp(a)\n  L: sum(u + v)\nloss: L\n")
    out = verify(eliminate_common_subexpressions(g))
    assert structure(out) == [
        ("L", "sum", ("L_1",)), ("L_1", "add", ("u", "u")), ("a", "param", ()), ("b", "param", ()),
        ("u", "mul", ("u_1", "b")), ("u_1", "exp", ("a",)),
    ]
    assert len(g.nx) == 8  # the input graph is untouched


def test_never_merges_dropout_masks():
    g = sg.load("params: {a: {shape: [2]}}\ngraph:\n  L: sum(dropout(a, 0.5) + dropout(a, 0.5))\nloss: L\n")
    out = eliminate_common_subexpressions(g)
    assert len(out.nodes_of("dropout_mask")) == 2
