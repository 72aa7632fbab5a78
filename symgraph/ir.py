"""The intermediate representation: a computation graph over ``networkx.DiGraph``.

Every node is a leaf (``input``, ``param``, ``const``) or an op application.
Node attributes:

``op``     the op name (a key of the op registry) or a leaf kind
``shape``  a tuple of ints; the batch axis is a :class:`Batch` int
``dtype``  ``"float"`` or ``"int"``
``attrs``  the op's keyword attributes as a sorted tuple of pairs (hashable,
           so that common-subexpression elimination can key on them)

Leaves may also carry ``init`` (params) and ``value`` (a scalar default).
An edge ``u -> v`` carries ``pos``: the tuple of argument positions of ``v``
that read ``u`` (a tuple, because ``x * x`` reads ``x`` twice and a DiGraph has
no parallel edges).
"""

from __future__ import annotations

import functools
import gc
import heapq
import itertools
from typing import Any, Iterable

import networkx as nx

from .errors import SpecError
from .names import check_name, emittable

LEAVES = ("input", "param", "const")
MAX_ELEMENTS = 2**40


class Batch(int):
    """The batch size: an int whose value is the compiled batch size.

    Generated code reads it at run time (``n``), so a call may pass fewer
    examples than the spec's ``batch`` dim. Shape rules keep the object when
    they pass an axis through unchanged; arithmetic on it gives a plain int,
    which is what an axis that mixes batch and other sizes should be.
    """

    def __repr__(self) -> str:
        return f"batch={int(self)}"


def is_batch(dim: Any) -> bool:
    return isinstance(dim, Batch)


def batch_axis(shape: tuple) -> int | None:
    """The first axis of ``shape`` that is the batch axis, if any."""
    return next((i for i, d in enumerate(shape) if is_batch(d)), None)


def freeze(value: Any) -> Any:
    """A hashable, canonical form of an attribute value that keeps batch-ness."""
    if isinstance(value, Batch):
        return ("batch", int(value))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def numel(shape: Iterable[int]) -> int:
    count = 1
    for d in shape:
        count *= int(d)
    return count


# Every attribute a node carries: the IR's schema. Graph.add_node and Graph.set
# are the only writers, and refuse any other key.
NODE_ATTRIBUTES = {
    "op": "the op's name, or input, param or const",
    "shape": "a tuple of sizes; the batch axis is a Batch",
    "dtype": "float or int",
    "attrs": "the op's attributes as sorted (key, value) pairs (hashable; Graph.attrs gives a dict)",
    "chain": "the chain-rule step a node of the gradient belongs to: (forward node, its argument, role), see autodiff",
    "named": "True where the spec (or the builder's define) gave the node its name",
    "init": "a param's initialisation, as the spec wrote it",
    "value": "a leaf's value, where the spec gives one",
    "dim_names": "a leaf's shape as the spec wrote it, dim names where it used them (for messages)",
}
PROVENANCE = ("chain", "named")  # what a node that takes another's place takes over with it
NO_STEP = (None, None, None)  # the chain-rule step of a node that differentiation did not make


class Graph:
    """A static computation graph: named nodes in a ``networkx.DiGraph``.

    Parameters
    ----------
    name : str
        The model's name; it names generated files and C symbols.
    dims : dict, optional
        Named sizes. A dim called ``batch`` is the batch axis.
    source : str, optional
        The file the graph came from, used in error messages.
    """

    def __init__(self, name: str = "model", dims: dict | None = None, source: str | None = None):
        self.name = check_name(name, node="name")
        self.source = source
        self.nx = nx.DiGraph()
        self.dims: dict[str, int] = {}
        for key, value in (dims or {}).items():
            self.add_dim(key, value)
        self.loss: str | None = None
        self.outputs: list[str] = []
        self.train: dict = {}
        # Set by differentiation: leaf -> node of d loss / d leaf, and
        # forward node -> its adjoint.
        self.gradients: dict[str, str] = {}
        self.cotangents: dict[str, str] = {}
        self.results: dict[str, str] = {}  # further values a target computes (a metric's sum) -> their nodes
        self._ids = itertools.count()
        self.claimed: frozenset[str] = frozenset()  # names the spec defines later: fresh() keeps off them

    # -- dims ---------------------------------------------------------------
    def add_dim(self, key: str, value: Any) -> int:
        check_name(key, node=f"dims.{key}" if isinstance(key, str) else "dims")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SpecError(f"dim {key!r} must be a positive integer, got {value!r}", node=f"dims.{key}")
        if value > 2**31 - 1:
            raise SpecError(f"dim {key!r} = {value} overflows a 32-bit size", node=f"dims.{key}")
        self.dims[key] = Batch(value) if key == "batch" else int(value)
        return self.dims[key]

    # -- nodes ----------------------------------------------------------------
    def fresh(self, stem: str) -> str:
        """A node id not yet used: ``stem``, else ``stem_1``, ``stem_2``, ...

        Never a name the spec still has to define (``claimed``), nor one that
        cannot be emitted (``do``, the cotangent of a node ``o``, is a C keyword).
        """
        base = stem if emittable(f"{stem}_1") else f"u_{stem}"  # sg_x_1 would still be the generated code's
        for candidate in itertools.chain(dict.fromkeys([stem, base]), (f"{base}_{k}" for k in itertools.count(1))):
            if (
                candidate not in self.nx
                and candidate not in self.dims
                and candidate not in self.claimed
                and emittable(candidate)
            ):
                return candidate
        raise AssertionError("unreachable")

    def temp_id(self) -> str:
        """An id no spec name can take (``~`` is not an identifier character)."""
        return f"~{next(self._ids)}"

    def add_node(
        self,
        op: str,
        args: tuple[str, ...] = (),
        attrs: dict | tuple = (),
        shape: tuple = (),
        dtype: str = "float",
        name: str | None = None,
        **extra: Any,
    ) -> str:
        """Add one node; its shape and dtype must already be known."""
        node = name if name is not None else self.temp_id()
        if node in self.nx:
            raise SpecError(f"{node!r} is defined twice", node=node)
        if numel(shape) > MAX_ELEMENTS:
            raise SpecError(f"shape {tuple(shape)} has more than 2**40 elements", node=node)
        items = attrs.items() if isinstance(attrs, dict) else attrs
        frozen = tuple(sorted((k, freeze_keep(v)) for k, v in items))
        undeclared(extra)
        self.nx.add_node(node, op=op, shape=tuple(shape), dtype=dtype, attrs=frozen, **extra)
        for pos, arg in enumerate(args):
            if self.nx.has_edge(arg, node):
                self.nx.edges[arg, node]["pos"] += (pos,)
            else:
                self.nx.add_edge(arg, node, pos=(pos,))
        return node

    # These accessors run millions of times on large graphs: they read the
    # DiGraph's own dicts (_pred, _node) instead of building a view per call.
    def args(self, node: str) -> list[str]:
        """The arguments of ``node`` in call order."""
        slots: dict[int, str] = {}
        for arg, data in self.nx._pred[node].items():
            for pos in data["pos"]:
                slots[pos] = arg
        return [slots[i] for i in range(len(slots))]

    def op(self, node: str) -> str:
        return self.nx._node[node]["op"]

    def shape(self, node: str) -> tuple:
        return self.nx._node[node]["shape"]

    def dtype(self, node: str) -> str:
        return self.nx._node[node]["dtype"]

    def attrs(self, node: str) -> dict:
        return dict(self.nx._node[node]["attrs"])

    def attrs_key(self, node: str) -> tuple:
        """The attributes as stored: sorted (key, value) pairs, hashable."""
        return self.nx._node[node]["attrs"]

    def get(self, node: str, key: str, default: Any = None) -> Any:
        """A declared attribute of ``node`` (see NODE_ATTRIBUTES), or ``default``."""
        undeclared([key])
        return self.nx._node[node].get(key, default)

    def set(self, node: str, **values: Any) -> None:
        """Set declared attributes of ``node``."""
        undeclared(values)
        self.nx._node[node].update(values)

    def chain(self, node: str) -> tuple:
        """(forward node, argument, role) of the chain-rule step ``node`` belongs to; NO_STEP if none."""
        return self.nx._node[node].get("chain", NO_STEP)

    def is_named(self, node: str) -> bool:
        return bool(self.nx._node[node].get("named"))

    def carry(self, source: str, node: str) -> None:
        """``node`` takes over ``source``'s provenance (its chain-rule step, its
        being named): for a node that takes ``source``'s place."""
        data = self.nx._node[source]
        self.set(node, **{key: data[key] for key in PROVENANCE if key in data})

    def become_constant(self, node: str, value: Any) -> None:
        """``node`` holds ``value`` from now on, reading nothing; its name and provenance stay."""
        self.nx.remove_edges_from(list(self.nx.in_edges(node)))
        self.set(node, op="const", attrs=(("value", value),))

    def nodes_of(self, kind: str) -> list[str]:
        """Leaves of one kind, in the order they were declared."""
        return [n for n, d in self.nx.nodes(data=True) if d["op"] == kind]

    @property
    def inputs(self) -> list[str]:
        return self.nodes_of("input")

    @property
    def params(self) -> list[str]:
        return self.nodes_of("param")

    def order(self) -> list[str]:
        """A fixed topological order (ties broken by insertion order).

        networkx's lexicographical_topological_sort with the insertion rank as
        key, written over the DiGraph's own dicts: the same order, several
        times faster on large graphs.
        """
        nodes = list(self.nx._node)
        rank = {n: i for i, n in enumerate(nodes)}
        waiting = {n: len(preds) for n, preds in self.nx._pred.items()}
        ready = [rank[n] for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        out = []
        while ready:
            node = nodes[heapq.heappop(ready)]
            out.append(node)
            for reader in self.nx._succ[node]:
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    heapq.heappush(ready, rank[reader])
        if len(out) != len(nodes):
            raise nx.NetworkXUnfeasible("graph contains a cycle")
        return out

    def roots(self) -> list[str]:
        """What must survive optimisation: loss, outputs, gradients and results."""
        found = [self.loss] if self.loss is not None else []
        return found + self.outputs + list(self.gradients.values()) + list(self.results.values())

    def needed_by(self, roots) -> set[str]:
        """``roots`` and every node they read, directly or not (one walk for all roots)."""
        seen = set(roots)
        stack = list(seen)
        while stack:
            for arg in self.nx.predecessors(stack.pop()):
                if arg not in seen:
                    seen.add(arg)
                    stack.append(arg)
        return seen

    def redirect(self, mapping: dict[str, str]) -> None:
        """Point the loss, outputs, gradients and results at new nodes."""
        if self.loss in mapping:
            self.loss = mapping[self.loss]
        self.outputs = [mapping.get(o, o) for o in self.outputs]
        self.gradients = {k: mapping.get(v, v) for k, v in self.gradients.items()}
        self.results = {k: mapping.get(v, v) for k, v in self.results.items()}
        self.cotangents = {k: mapping.get(v, v) for k, v in self.cotangents.items() if k in self.nx}

    def rename(self, mapping: dict[str, str], keep_order: bool = False) -> None:
        """Rename nodes everywhere: the graph, loss, outputs, gradients and
        cotangents (keys too), and the chain-rule steps nodes record. With
        ``keep_order`` the nodes keep their places in insertion order (which
        breaks ties in ``order``); otherwise renamed ones move to the end."""
        if keep_order:
            self.nx = nx.relabel_nodes(self.nx, mapping, copy=True)
        else:
            nx.relabel_nodes(self.nx, mapping, copy=False)
        self.gradients = {mapping.get(k, k): v for k, v in self.gradients.items()}
        self.cotangents = {mapping.get(k, k): v for k, v in self.cotangents.items()}
        self.redirect(mapping)
        for node, data in self.nx._node.items():
            if "chain" in data:
                fwd, arg, role = data["chain"]
                self.set(node, chain=(mapping.get(fwd, fwd), mapping.get(arg, arg), role))

    def copy(self) -> "Graph":
        """A copy sharing nothing mutable with ``self`` (passes return copies)."""
        new = object.__new__(type(self))
        for key, value in self.__dict__.items():
            if key != PER_GRAPH:  # what was worked out from this graph need not hold for the copy
                new.__dict__[key] = type(value)(value) if isinstance(value, (dict, list)) else value
        new.nx = copy_digraph(self.nx)
        new._ids = itertools.count(next(self._ids))
        return new

    def where(self) -> str:
        return self.source or "<graph>"

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {self.nx.number_of_nodes()} nodes, loss={self.loss}>"


def undeclared(keys) -> None:
    """Refuse attributes the IR does not declare (a misspelt key would be lost silently)."""
    unknown = set(keys) - set(NODE_ATTRIBUTES)
    if unknown:
        raise KeyError(f"undeclared node attribute(s) {sorted(unknown)}; see ir.NODE_ATTRIBUTES")


def per_graph(function):
    """Cache ``function(g)`` on each graph object, for as long as the graph lives.

    Only for graphs nothing changes any more: the optimised graphs that code
    generation reads (a copy starts without the cache). The results live on
    the graph itself: in a table weakly keyed by the graph, a result that
    refers back to its graph (a ChainRule does) kept the graph alive for good.
    """

    @functools.wraps(function)
    def cached(g: "Graph"):
        results = g.__dict__.setdefault(PER_GRAPH, {})
        if function not in results:
            results[function] = function(g)
        return results[function]

    return cached


PER_GRAPH = "_per_graph"  # the attribute of a Graph holding per_graph's results


def collector_paused(function):
    """Run ``function`` with Python's cyclic garbage collector off.

    Differentiating, optimising and generating code for a large graph
    allocate millions of small dicts and tuples, and the collector's passes
    over them took half the time; the work creates no garbage cycles that
    matter before it returns.
    """

    @functools.wraps(function)
    def paused(*args, **kwargs):
        was_on = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_on:
                gc.enable()

    return paused


def copy_digraph(d: nx.DiGraph) -> nx.DiGraph:
    """``d.copy()``, without networkx's per-edge overhead (passes copy large
    graphs many times): node and edge attribute dicts copied one level deep,
    each edge's dict shared by its successor and predecessor entries, as
    networkx keeps it."""
    new = d.__class__()
    new.graph.update(d.graph)
    for node, data in d._node.items():
        new._node[node] = dict(data)
        new._succ[node] = {}
        new._pred[node] = {}
    for u, readers in d._succ.items():
        row = new._succ[u]
        for v, data in readers.items():
            row[v] = new._pred[v][u] = dict(data)
    return new


def freeze_keep(value: Any) -> Any:
    """Lists become tuples; Batch ints stay Batch (codegen reads them)."""
    if isinstance(value, list):
        return tuple(freeze_keep(v) for v in value)
    if isinstance(value, tuple):
        return tuple(freeze_keep(v) for v in value)
    return value


def verify(g: Graph) -> Graph:
    """Check structural invariants; raise ``AssertionError`` on a broken graph.

    Passes and the differentiator call this in tests and with ``--verify``.
    """
    assert nx.is_directed_acyclic_graph(g.nx), "graph has a cycle"
    for node, data in g.nx.nodes(data=True):
        for key in ("op", "shape", "dtype", "attrs"):
            assert key in data, f"{node}: missing {key}"
        assert set(data) <= set(NODE_ATTRIBUTES), f"{node}: undeclared attributes {set(data) - set(NODE_ATTRIBUTES)}"
        assert data["dtype"] in ("float", "int"), f"{node}: bad dtype"
        positions = sorted(p for _, _, e in g.nx.in_edges(node, data=True) for p in e["pos"])
        assert positions == list(range(len(positions))), f"{node}: argument slots {positions}"
        if data["op"] in LEAVES:
            assert not positions, f"{node}: a leaf with arguments"
        hash(data["attrs"])
    if g.loss is not None:
        assert g.loss in g.nx, f"loss {g.loss} missing"
    for out in g.outputs:
        assert out in g.nx, f"output {out} missing"
    return g
