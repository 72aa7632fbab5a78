"""The schedule both targets print: which nodes get a statement, in what
order, what each reads, which buffer each lives in and until when.

A backend turns each statement into text and nothing more. The decisions
that make the code fast or small (element-wise fusion, matrix transposes
read in place, views, the cross-entropy loss set by its gradient's kernel,
buffer lifetimes and the memory plan) are taken here, once, from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SpecError
from ..ir import Graph, per_graph
from ..ops import REGISTRY
from ..ops.symbolic import structure
from ..passes.fusion import fusion_groups
from .memory import Buffer

LEAVES = ("input", "param", "const")


@dataclass
class Schedule:
    """Statements computing ``roots`` of ``g``; those in ``dests`` are written
    straight into the caller's buffers."""

    g: Graph
    roots: tuple[str, ...]
    dests: frozenset[str]
    order: list[str] = field(default_factory=list)  # the nodes with a statement, in the order they run
    absorbed: frozenset[str] = frozenset()  # element-wise nodes printed inside their reader's expression
    members: dict[str, list[str]] = field(default_factory=dict)  # a statement -> the nodes absorbed into it, producers first
    transposed: dict[str, str] = field(default_factory=dict)  # a matrix transpose read only by products -> what it transposes
    reads: dict[str, set[str]] = field(default_factory=dict)  # a statement -> the nodes its text reads
    last_read: dict[str, int] = field(default_factory=dict)  # a node -> the position of its last reader
    losses: dict[str, str] = field(default_factory=dict)  # a cross-entropy gradient that also sets its loss -> that loss
    aliases: dict[str, str] = field(default_factory=dict)  # a node without a buffer of its own -> the node whose buffer it uses
    structures: dict[str, tuple[tuple, list[str]]] = field(default_factory=dict)

    def owner(self, node: str) -> str:
        """The node whose buffer holds ``node``."""
        while node in self.aliases:
            node = self.aliases[node]
        return node

    def structure(self, node: str) -> tuple[tuple, list[str]]:
        """``node``'s fused expression as a structure key and its leaves
        (``ops.symbolic.structure``), worked out once."""
        if node not in self.structures:
            self.structures[node] = structure(self.g, node, self.absorbed.__contains__)
        return self.structures[node]

    def leaves(self, node: str) -> list[str]:
        """The nodes with buffers that ``node``'s fused expression reads."""
        return self.structure(node)[1]

    def fused(self, node: str) -> list[str]:
        return self.members.get(node, [])

    def lifetimes(self) -> dict[str, tuple[int, int]]:
        """Each buffer's owner -> the positions of the statement that writes
        it and of the last that reads it or any node sharing it. Results are
        read by the caller, after every statement."""
        end = len(self.order)
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for i, v in enumerate(self.order):
            first.setdefault(self.owner(v), i)
            for a in self.reads[v]:
                last[self.owner(a)] = i
            if v in self.losses:  # the loss is written here, with its gradient
                loss = self.owner(self.losses[v])
                last[loss] = max(last.get(loss, i), i)
        for v in set(self.roots) & set(self.order):
            last[self.owner(v)] = end
        return {v: (i, max(last.get(v, i), i)) for v, i in first.items()}

    def buffers(self, elements, own: set[str] | None = None) -> list[Buffer]:
        """A ``Buffer`` of ``elements(node)`` elements for each node that owns
        one (those in ``own``, by default every statement neither aliased nor
        written to the caller's buffers), live as ``lifetimes`` says."""
        spans = self.lifetimes()
        out = []
        for v in self.order:
            if (v in own) if own is not None else (v not in self.dests and v not in self.aliases):
                if self.g.dtype(v) != "float":
                    raise SpecError(f"node {v!r} holds integers; only inputs may", node=v, source=self.g.source)
                out.append(Buffer(v, elements(v), *spans[v]))
        return out


def schedule(g: Graph, roots: list[str], dests=frozenset(), views=frozenset(("reshape",)), in_place: bool = True) -> Schedule:
    """The schedule of ``roots``: worked out once per optimised graph and
    arguments (a float32 model's float64 twin reuses its schedules).

    ``views`` are the ops a target writes as views of their argument;
    ``in_place`` lets an element-wise statement overwrite an argument that
    dies there (see ``find_in_place``).
    """
    key = (tuple(roots), frozenset(dests), frozenset(views), in_place)
    known = schedules(g)
    if key not in known:
        known[key] = build(g, tuple(roots), frozenset(dests), frozenset(views), in_place)
    return known[key]


@per_graph
def schedules(g: Graph) -> dict[tuple, Schedule]:
    return {}


@per_graph
def node_order(g: Graph) -> list[str]:
    """``g.order()``, worked out once per graph."""
    return g.order()


def build(g: Graph, roots: tuple[str, ...], dests: frozenset[str], views: frozenset[str], in_place: bool) -> Schedule:
    needed = g.needed_by(list(roots))
    order = node_order(g)
    # the spec's own names keep statements of their own: a reader follows the lecture's equations line by line
    named = frozenset(n for n in g.nx if g.is_named(n))
    heads = fusion_groups(g, list(roots), keep=named, order=order)
    s = Schedule(g, roots, dests, absorbed=frozenset(heads))
    for node in order:  # producers first
        if node in heads:
            s.members.setdefault(heads[node], []).append(node)
    s.transposed = read_transposed(g, needed, set(roots))
    s.order = [v for v in order if v in needed and g.op(v) not in LEAVES and v not in s.absorbed and v not in s.transposed]
    for v in s.order:
        args = s.leaves(v) if REGISTRY[g.op(v)].elementwise else g.args(v)
        s.reads[v] = {s.transposed.get(a, a) for a in args}
    s.last_read = {a: i for i, v in enumerate(s.order) for a in s.reads[v]}
    s.losses = losses_with_gradients(g, s.order, s.reads)
    find_views(s, views)
    if in_place:
        find_in_place(s)
    return s


def read_transposed(g: Graph, needed: set[str], roots: set[str]) -> dict[str, str]:
    """Matrix transposes that only matrix products read -> what they transpose:
    the products read it in place (NumPy's ``x.T``, C's swapped strides)."""
    return {
        v: g.args(v)[0] for v in needed
        if g.op(v) == "transpose" and g.attrs(v)["axes"] == (1, 0) and v not in roots
        and all(g.op(r) in ("matmul", "matmul_bias") and len(g.shape(r)) == 2 for r in g.nx.successors(v) if r in needed)
    }


def cross_entropy_pairs(g: Graph, order: list[str]) -> dict[str, str]:
    """Each cross-entropy gradient ``softmax_cross_entropy_grad(z, y, s)`` ->
    the loss ``cross_entropy(z, y)`` computed before it in ``order``, where
    there is one: both take exp(z - max z) over the same logits, which each
    target computes once for the two."""
    losses: dict[tuple, str] = {}
    found = {}
    for v in order:
        if g.op(v) == "cross_entropy":
            losses[tuple(g.args(v))] = v
        elif g.op(v) == "softmax_cross_entropy_grad" and tuple(g.args(v)[:2]) in losses:
            found[v] = losses.pop(tuple(g.args(v)[:2]))
    return found


def losses_with_gradients(g: Graph, order: list[str], reads: dict[str, set[str]]) -> dict[str, str]:
    """The pairs of ``cross_entropy_pairs`` where nothing between the loss
    and its gradient reads the loss: there the gradient's kernel, which has
    every row's maximum and sum of exponentials at hand, may set the loss."""
    index = {v: i for i, v in enumerate(order)}
    return {
        grad: loss for grad, loss in cross_entropy_pairs(g, order).items()
        if not any(loss in reads[v] for v in order[index[loss] + 1:index[grad]])
    }


def find_views(s: Schedule, views: frozenset[str]) -> None:
    """A statement of an op in ``views`` uses its argument's buffer, where that
    argument has a statement (not the caller's buffer: a result stays whole)."""
    for v in s.order:
        if s.g.op(v) in views and v not in s.dests:
            x = s.g.args(v)[0]
            if x in s.reads:
                s.aliases[v] = x


def find_in_place(s: Schedule) -> None:
    """An element-wise statement computed in place of an argument of its own
    shape: where that argument dies there, is read at the same index as the
    result is written (so each element is read before it is overwritten),
    shares its buffer with no other argument, and nothing it reads is
    broadcast: GCC 12 at -O3 with AVX-512 vectorised a row-broadcast loop
    written in place wrongly (softmax's gradient over [8, 5] logits, a test
    in test_c.py). The caller's buffers and the results are never
    overwritten."""
    g, aliases, owner = s.g, s.aliases, s.owner  # owner() follows the aliases found so far
    computed = set(s.order)
    protected = set(s.dests) | set(s.roots)
    read_until = {v: s.last_read.get(v, -1) for v in computed}  # per buffer owner: its last read so far
    for v in list(aliases):  # a view keeps its argument's buffer for as long as it is read
        x = owner(v)
        read_until[x] = max(read_until[x], read_until.pop(v))
    for i, v in enumerate(s.order):
        if v in s.dests or v in aliases or not REGISTRY[g.op(v)].elementwise:
            continue
        leaves = s.leaves(v)
        if any(g.shape(b) != g.shape(v) for b in leaves):
            continue
        for a in leaves:
            if a not in computed or g.shape(a) != g.shape(v) or a in protected or owner(a) in protected:
                continue
            if read_until[owner(a)] > i or any(owner(b) == owner(a) for b in leaves if b != a):
                continue
            aliases[v] = a
            read_until[owner(a)] = max(read_until[owner(a)], read_until.pop(v))
            break
