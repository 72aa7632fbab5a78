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


class Substitutions:
    """A lowering pass's edits: each new node takes an old one's place, its
    readers, provenance (chain-rule step, being named), adjoint and, once the
    pass calls ``settle``, its name, so that the generated code's comments
    read as they did. Names and the graph's roots change once for all the
    edits: per edit, both cost a pass over the graph."""

    def __init__(self, g: Graph):
        self.g = g
        self.redirected: dict[str, str] = {}
        self.renamed: dict[str, str] = {}

    def substitute(self, old: str, new: str) -> None:
        g = self.g
        g.carry(old, new)
        adjoint = g.cotangents.get(old)
        replace(g, old, new, self.redirected)
        if adjoint is not None:
            g.cotangents[new] = adjoint
        self.renamed[new] = old

    def settle(self) -> Graph:
        redirect_all(self.g, self.redirected)
        self.g.rename(self.renamed)
        return self.g


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
