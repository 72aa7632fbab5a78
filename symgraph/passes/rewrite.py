"""The one graph edit that passes share: replace a node by another."""

from __future__ import annotations

import networkx as nx

from ..ir import Graph


def replace(g: Graph, old: str, new: str, redirected: dict[str, str] | None = None) -> None:
    """Make every reader of ``old`` read ``new`` instead, then drop ``old``.

    Mutates ``g``; passes call it on their own copy only. A pass that makes
    many replacements collects them in ``redirected`` and calls
    :func:`redirect_all` once, instead of re-pointing the loss, outputs and
    adjoints after each one.
    """
    for _, reader, data in list(g.nx.out_edges(old, data=True)):
        if g.nx.has_edge(new, reader):
            g.nx.edges[new, reader]["pos"] = tuple(sorted(g.nx.edges[new, reader]["pos"] + data["pos"]))
        else:
            g.nx.add_edge(new, reader, pos=data["pos"])
    g.nx.remove_node(old)
    if redirected is None:
        g.redirect({old: new})
    else:
        redirected[old] = new


def substitute(g: Graph, old: str, new: str) -> None:
    """``new`` takes ``old``'s place: its readers, its name, its provenance
    (chain-rule step, being named) and its adjoint, so that the generated
    code's comments read as they did (a lowering pass's edit)."""
    g.carry(old, new)
    adjoint = g.cotangents.get(old)
    replace(g, old, new)
    if adjoint is not None:
        g.cotangents[new] = adjoint
    g.rename({new: old})


def redirect_all(g: Graph, redirected: dict[str, str]) -> None:
    """Point the loss, outputs and adjoints at what replaced their nodes (following chains)."""

    def survivor(node: str) -> str:
        while node in redirected:
            node = redirected[node]
        return node

    if redirected:
        g.redirect({old: survivor(old) for old in redirected})


def named(g: Graph, node: str, stem: str) -> str:
    """Give a node a pass made (a ``~`` temporary) a fresh name from ``stem``; return it."""
    name = g.fresh(stem)
    nx.relabel_nodes(g.nx, {node: name}, copy=False)
    return name
