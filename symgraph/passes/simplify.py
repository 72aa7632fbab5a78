"""Algebraic simplification of element-wise clusters with sympy."""

from __future__ import annotations

from functools import lru_cache

import networkx as nx
import sympy as sp

from ..autodiff import next_temp, temps_since
from ..ir import Graph
from ..ops import const
from ..ops.symbolic import (
    BATCH,
    buildable,
    from_sympy,
    function_ops,
    placeholder,
    rational,
    structure,
    structure_expr,
    structure_size,
)
from .fusion import fusion_groups, is_elementwise
from .rewrite import named, redirect_all, replace

MAX_OPS = 16  # larger clusters are left as they are: simplifying grows fast with size


def simplify_elementwise(g: Graph) -> Graph:
    """Rewrite each cluster of element-wise nodes as sympy's simplest form of it.

    A cluster is an element-wise node with the element-wise nodes that only it
    reads, recursively, within one chain-rule step (a step's result is never
    merged into the next, so the generated code still shows every step); its
    expression over the arrays it reads goes through
    sympy (cancel and factor_terms, as ``explain`` uses them), and the
    cluster is rebuilt from the result when that has fewer operations and
    uses only ops symgraph has: ``2*x/(2*n)`` becomes ``x/n``, and ``x*y/y``
    becomes ``x`` where that keeps the shape. Each distinct cluster is
    simplified once. Nodes it leaves unread are for dead-code elimination.
    """
    out = g.copy()
    roots = set(out.roots())
    # each chain-rule step's result stays a cluster's head: the generated code shows every step
    steps = frozenset(v for v in out.nx if out.chain(v)[2] not in (None, "part"))
    order = g.order()
    inside = fusion_groups(out, keep=steps, order=order, same_shape=False)
    heads = [v for v in order if is_elementwise(out, v) and v not in inside]
    redirected: dict[str, str] = {}
    for head in heads:
        key, leaves = structure(out, head, inside.__contains__)
        simpler = simplest(key) if 2 <= structure_size(key) <= MAX_OPS else None
        if simpler is None:
            continue
        env = {placeholder(i): leaf for i, leaf in enumerate(leaves)}
        if BATCH_SIZE in simpler.free_symbols:
            env[BATCH_SIZE] = named(out, const(out, out.dims["batch"]), "batch_size")
        first = next_temp(out)
        new = from_sympy(out, simpler, env)
        made = [t for t in temps_since(out, first) if t != new]
        if out.shape(new) != out.shape(head) or out.dtype(new) != out.dtype(head):
            # e.g. the cluster reduced to an argument it broadcast: the new nodes go at once (left
            # unnamed, common-subexpression elimination could pick one to stand for a named node)
            out.nx.remove_nodes_from(made + ([new] if new.startswith("~") else []))
            continue
        if new in leaves:  # x*y/y: the cluster is one of its arguments
            out.nx.remove_nodes_from(made)
            if not out.is_named(head) and head not in roots:
                replace(out, head, new, redirected)
            continue
        fwd, arg, role = out.chain(head)
        out.carry(head, new)
        for t in made if role is not None else ():
            out.set(t, chain=(fwd, arg, "part"))
        replace(out, head, new, redirected)
        del redirected[head]  # the new node takes the head's name
        nx.relabel_nodes(out.nx, {new: head}, copy=False)
        for t in made:
            named(out, t, head)
    redirect_all(out, redirected)
    return out


BATCH_SIZE = sp.Symbol("sg_batch", positive=True)


def constant(value) -> sp.Expr:
    return BATCH_SIZE if value == BATCH else rational(value)


@lru_cache(maxsize=4096)
def simplest(key: tuple) -> sp.Expr | None:
    """The simplified expression of a cluster, when it takes fewer ops than the
    cluster's nodes and symgraph's ops can build it. (sympy's own evaluation
    already does part of the work: 2*(x/(2*n)) is x/n as soon as it is built.)"""
    expr = structure_expr(key, constant)
    # cancel (rational functions in lowest terms) and factor_terms (common
    # factors out, as explain shows tensor gradients). sympy.simplify took
    # about half a second per cluster with tanh in it, most of it in rewrites
    # whose results symgraph's ops could not build anyway.
    simpler = min((expr, sp.cancel(expr), sp.factor_terms(expr), sp.factor_terms(sp.cancel(expr))), key=sp.count_ops)
    if sp.count_ops(simpler) >= structure_size(key) or not buildable(simpler):
        return None
    return simpler


