"""Symbolic reverse-mode differentiation: a graph in, its gradient graph out.

The driver is micrograd's ``backward()`` on a graph: order the nodes, seed the
loss with 1, walk backwards calling each op's VJP rule, and accumulate
cotangents over fan-out with ``add``. Broadcasting is undone here, once, by
summing every contribution down to its argument's shape, so no rule has to.
"""

from __future__ import annotations

import itertools

from .errors import SpecError
from .names import emittable
from .ir import Graph, verify
from .ops import REGISTRY, apply, const
from .ops.reduce import sum_to


def differentiate(g: Graph, wrt: list[str] | None = None) -> Graph:
    """Return the gradient graph of ``g``: its forward nodes plus the backward ones.

    Parameters
    ----------
    g : Graph
        A graph with a scalar ``loss``.
    wrt : list of str, optional
        Leaves to differentiate with respect to; all params by default.
        Float inputs may be named too.

    Returns
    -------
    Graph
        A new graph (``g`` is not changed) with ``gradients``, a dict from
        each leaf in ``wrt`` to the node holding d loss / d leaf, and
        ``cotangents``, a dict from every forward node that reaches the loss
        to its adjoint node.
    """
    if g.loss is None:
        raise SpecError("no loss to differentiate", node="loss", source=g.source)
    targets = list(wrt) if wrt is not None else g.params
    for t in targets:
        if t not in g.nx or g.op(t) not in ("param", "input") or g.dtype(t) != "float":
            raise SpecError(f"cannot differentiate with respect to {t!r}: not a float input or param", node=str(t), source=g.source)
    gg = g.copy()
    relevant = relevant_nodes(g, targets)
    pending: dict[str, list[str]] = {g.loss: [const(gg, 1.0)]}
    cotangents: dict[str, str] = {}
    names: list[tuple[str, str]] = []  # (temporary id, stem) named once the walk is done
    for node in reversed([n for n in g.order() if n in relevant]):
        parts = pending.pop(node, None)
        if not parts:
            continue
        total = parts[0]
        for part in parts[1:]:
            if total != parts[0]:  # a partial sum
                names.append((total, f"d{node}_"))
            total = apply(gg, "add", [total, part])
            gg.set(total, chain=(None, node, "sum"))
        cotangents[node] = total
        names.append((total, f"d{node}"))
        if gg.op(node) in ("param", "input"):
            continue
        rule = REGISTRY[gg.op(node)].vjp
        if rule is None:
            raise SpecError(f"op {gg.op(node)!r} has no VJP rule", node=node, source=g.source)
        first_new = next_temp(gg)
        results = rule(gg, node, total)
        contributions = {}
        for arg, cotangent in zip(g.args(node), results):
            if cotangent is not None and arg in relevant:
                contributions[arg] = sum_to(gg, cotangent, g.shape(arg))
                pending.setdefault(arg, []).append(contributions[arg])
        created = temps_since(gg, first_new)
        tag_chain_steps(gg, node, contributions, set(created))
        names.extend((t, f"d{node}_") for t in created)
    gg.gradients = {}
    for t in targets:
        if t not in cotangents:  # no path to the loss: the gradient is zero
            zero = apply(gg, "broadcast_to", [const(gg, 0.0)], {"shape": g.shape(t), "axes": ()})
            names.append((zero, f"d{t}"))
            gg.gradients[t] = zero
        else:
            gg.gradients[t] = cotangents[t]
    gg.cotangents = cotangents
    name_temporaries(gg, names)
    return verify(gg)


def tag_chain_steps(g: Graph, node: str, contributions: dict[str, str], created: set[str]) -> None:
    """Record which chain-rule step made each new backward node, for the
    derivation comments of generated code: ``(node, arg, role)``, where role
    is "result" for d loss / d arg through ``node``, "part" for the nodes that
    feed it (arg is None where several arguments share one)."""
    owner: dict[str, str | None] = {}
    for arg, result in contributions.items():
        stack = [result]
        while stack:
            n = stack.pop()
            if n not in created or (n in owner and owner[n] in (arg, None)):
                continue
            owner[n] = arg if n not in owner else None
            stack.extend(g.args(n))
    for n in created:
        if n in owner:
            role = "result" if contributions.get(owner[n]) == n else "part"
            g.set(n, chain=(node, owner[n], role))
        else:
            g.set(n, chain=(node, None, "part"))


def relevant_nodes(g: Graph, targets: list[str]) -> set[str]:
    """Nodes on some path from a target to the loss; nothing else gets an adjoint."""
    downstream = set(targets)
    stack = list(downstream)
    while stack:  # one walk from all targets at once
        for reader in g.nx.successors(stack.pop()):
            if reader not in downstream:
                downstream.add(reader)
                stack.append(reader)
    return downstream & g.needed_by([g.loss])


def next_temp(g: Graph) -> int:
    probe = g.temp_id()
    return int(probe[1:]) + 1


def temps_since(g: Graph, first: int) -> list[str]:
    """The temporaries made since id ``first``, oldest first (ids count up)."""
    end = next_temp(g)
    return [f"~{i}" for i in range(first, end) if f"~{i}" in g.nx]


def name_temporaries(g: Graph, names: list[tuple[str, str]]) -> None:
    """Give backward nodes readable names: ``dh`` for h's adjoint, ``dh_1`` for parts."""
    mapping: dict[str, str] = {}
    taken = set(g.nx) | set(g.dims)
    counters: dict[str, int] = {}
    for temp, stem in sorted(names, key=lambda pair: pair[1].endswith("_")):
        if not temp.startswith("~") or temp in mapping:
            continue
        if stem.endswith("_"):
            k = counters.get(stem, 0)
            while True:
                k += 1
                candidate = f"{stem}{k}"
                if candidate not in taken and emittable(candidate):
                    break
            counters[stem] = k
        else:
            candidate, k = stem, 0
            while candidate in taken or not emittable(candidate):  # do, dif: C keywords
                k += 1
                candidate = f"{stem}_{k}"
        mapping[temp] = candidate
        taken.add(candidate)
    leftovers = [n for n in g.nx if n.startswith("~") and n not in mapping]  # the constants
    numbers = itertools.count(1)
    for temp in leftovers:
        candidate = "t"
        while candidate in taken:
            candidate = f"t_{next(numbers)}"
        mapping[temp] = candidate
        taken.add(candidate)
    g.rename(mapping)
