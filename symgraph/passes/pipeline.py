"""The optimisation pipeline: named passes in one explicit order."""

from __future__ import annotations

from typing import Callable

from ..ir import Graph, verify
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants, fold_double_negation
from .lower import bias_products, contract_products, fuse_softmax_cross_entropy, sum_products
from .simplify import simplify_elementwise

Pass = Callable[[Graph], Graph]

PIPELINE: list[Pass] = [
    eliminate_dead_code,
    fold_constants,
    fold_double_negation,
    simplify_elementwise,
    eliminate_common_subexpressions,
    eliminate_dead_code,
]


# What the generated code runs: the pipeline, then rewrites that give up the
# textbook form of a gradient (which explain shows) for speed.
CODEGEN: list[Pass] = PIPELINE + [fuse_softmax_cross_entropy, contract_products, bias_products, sum_products, eliminate_dead_code]


def optimize(g: Graph, passes: list[Pass] = PIPELINE, check: bool = False) -> Graph:
    """Run ``passes`` in order; with ``check``, verify the graph after each one."""
    for run in passes:
        g = run(g)
        if check:
            verify(g)
    return g
