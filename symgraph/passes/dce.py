"""Dead-code elimination."""

from __future__ import annotations

from ..ir import Graph


def eliminate_dead_code(g: Graph) -> Graph:
    """Drop every op node that neither the loss, an output nor a gradient needs.

    Inputs and params stay: they are the compiled program's interface.
    """
    live = g.needed_by(g.roots())
    out = g.copy()
    dead = [n for n in g.nx if n not in live and g.op(n) not in ("input", "param")]
    out.nx.remove_nodes_from(dead)
    out.cotangents = {k: v for k, v in out.cotangents.items() if k in out.nx and v in out.nx}
    return out
