"""Every op a graph can hold has an emitter in each backend: a new op that one
backend cannot print fails here, not in a user's compile."""

from __future__ import annotations

import pytest

from symgraph.codegen import c as c_backend
from symgraph.codegen import numpy as numpy_backend
from symgraph.ops import REGISTRY

# ops whose expansion always leaves other ops (they have no shape rule of their own)
HELD = sorted(name for name, op in REGISTRY.items() if op.infer_shape is not None)


@pytest.mark.parametrize("name", HELD)
def test_each_backend_emits_every_op(name):
    op = REGISTRY[name]
    if op.elementwise:  # printed from its sympy expression by both backends' printers
        assert op.expr is not None
        return
    assert name in numpy_backend.EMIT, f"the NumPy backend cannot emit {name}"
    assert name in c_backend.EMIT, f"the C backend cannot emit {name}"


def test_only_pure_macros_are_left_out():
    assert sorted(set(REGISTRY) - set(HELD)) == ["dropout", "flatten", "mse"]
