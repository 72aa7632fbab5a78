from __future__ import annotations

import symgraph as sg
from symgraph.ir import verify
from symgraph.passes import eliminate_dead_code


def test_drops_what_no_root_needs_and_keeps_leaves():
    g = sg.load("inputs: {x: {shape: [2]}}\nparams: {a: {shape: [2]}, b: {shape: [2]}}\ngraph:\n  dead: exp(b)\n  L: sum(a * x)\nloss: L\n")
    out = verify(eliminate_dead_code(g))
    assert sorted(out.nx) == ["L", "L_1", "a", "b", "x"]
