"""Traits that passes and backends read off the op itself: derived from an
element-wise op's sympy expression, or declared on its OpDef."""

from __future__ import annotations

import sympy as sp

from symgraph.ops import REGISTRY
from symgraph.ops.registry import X, OpDef


def test_commutativity_and_identities_are_read_off_the_expression():
    assert {name for name, op in REGISTRY.items() if op.commutative} == {"add", "mul"}
    identities = {name: [op.identity(v) for v in ([None, 0.0], [None, 1.0], [0.0, None], [1.0, None])] for name, op in REGISTRY.items()
                  if op.elementwise and op.arity == 2}
    assert identities["add"] == [0, None, 1, None] and identities["mul"] == [None, 0, None, 1]
    assert identities["sub"] == [0, None, None, None] and identities["div"] == [None, 0, None, None]
    # a new op gets them from its expression alone
    hypot = OpDef("hypot_sq", 2, expr=X[0] ** 2 + X[1] ** 2)
    average = OpDef("average", 2, expr=(X[0] + X[1]) / 2)
    assert hypot.commutative and average.commutative and hypot.identity([None, 0.0]) is None
    assert OpDef("lerp0", 2, expr=X[0] * (1 - X[1])).identity([None, 0.0]) == 0
    assert not OpDef("first", 2, expr=X[0] + 0 * X[1] + sp.Integer(0) * X[0]).commutative


def test_views_are_declared():
    assert {name for name, op in REGISTRY.items() if op.view} == {"reshape", "transpose", "slice", "broadcast_to"}
