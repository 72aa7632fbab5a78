"""The op registry: one frozen :class:`OpDef` per op, and ``apply`` to use one.

An op is defined in exactly one place, its family module (``elementwise.py``,
``linalg.py``, ``reduce.py``, ``nn.py``): shape rule, vector-Jacobian rule, and
for element-wise ops the sympy expression from which both the derivative and
the generated text are derived. Backend text lives in the emitter tables of
``symgraph.codegen``, keyed by op name.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import Any, Callable

import sympy as sp

from ..errors import SpecError
from ..ir import Batch, Graph, is_batch

REQUIRED = object()  # marks an attribute without a default

Shape = tuple


@dataclass(frozen=True)
class OpDef:
    """Everything symgraph knows about one op.

    Attributes
    ----------
    name : lower_snake name, as written in specs.
    arity : number of tensor arguments; None for variadic (at least one).
    attrs : keyword attributes in positional order, as ``(name, default)``;
        ``REQUIRED`` marks attributes without a default.
    infer_shape : ``(arg_shapes, attrs) -> shape``; raises ``ValueError``
        with a message naming both shapes on a mismatch.
    vjp : ``(g, node, cotangent) -> tuple[node | None, ...]``, one entry per
        argument; None means no gradient flows to that argument.
    expr : element-wise ops only: a sympy expression in ``X[0]..X[arity-1]``
        (and attribute symbols), from which the derivative and code come.
    canon : ``(arg_shapes, attrs) -> attrs``, puts attributes in canonical
        form (axes non-negative and sorted) so equal nodes compare equal.
    expand : macros only: builds the op out of other ops and returns the node.
    int_args : argument positions that hold integer ids or labels.
    int_bound : ``(arg_shapes, attrs) -> upper`` exclusive bound of those ids.
    any_args : positions that accept int or float.
    arg_names : what its tensor arguments are called in its signature
        (``symgraph ops``); x, y, ... by default.
    fold : evaluates the op on plain Python numbers (constant folding, and
        arithmetic on literals in a spec); None where it has no such meaning.
    domain : where the gradient test samples inputs ("real", "positive").
    combines : ``(arg_shapes, attrs) -> axes`` per argument: the axes along
        which the op combines elements (reduces, contracts, normalises,
        gathers, slides a window). Data-parallel training reads it to tell
        whether examples stay apart (see ``symgraph.sharding``). None, the
        default for a non-element-wise op, claims every axis: the safe side.
    averages : the op averages over the axes it combines (``mean`` and the
        losses), so over the batch axis it is a mean over examples.
    linear_in : argument positions in which the op is linear, the others
        held fixed (element-wise ops: read off ``expr``).
    view : the result holds the argument's elements, reindexed (a reshape, a
        transpose): a backend may hand out a view of the argument instead.
    shown : how ``explain`` writes a call of the op, ``(args, attrs, ranks) ->
        text`` from its arguments' text (parenthesised where needed), its
        attributes and its arguments' ranks; None: ``op(x, attr=value)``.
        Lowered ops are written as what they compute (``x @ W + b``).
    The properties ``commutative`` and ``identity`` are read off ``expr``.
    public : callable from a spec (internal ops appear only in gradients).
    doc : one line of math.
    example : public ops: a call in a spec, over the reference's example
        leaves (``x``, ``W``, ``seq``, ...; see ``reference.EXAMPLE_LEAVES``);
        an element-wise op's default is ``name(x)``.
    """

    name: str
    arity: int | None
    infer_shape: Callable[[list[Shape], dict], Shape] | None = None
    vjp: Callable | None = None
    attrs: tuple[tuple[str, Any], ...] = ()
    expr: sp.Expr | None = None
    canon: Callable[[list[Shape], dict], dict] | None = None
    expand: Callable | None = None
    int_args: tuple[int, ...] = ()
    int_bound: Callable[[list[Shape], dict], int] | None = None
    any_args: tuple[int, ...] = ()
    combines: Callable[[list[Shape], dict], tuple[tuple[int, ...], ...]] | None = None
    averages: bool = False
    linear_in: tuple[int, ...] = ()
    view: bool = False
    fold: Callable | None = None
    shown: Callable[[list[str], dict, list[int]], str] | None = None
    arg_names: tuple[str, ...] = ()
    domain: str = "real"
    public: bool = True
    random: bool = False
    doc: str = ""
    example: str = ""

    @property
    def elementwise(self) -> bool:
        return self.expr is not None

    @property
    def macro(self) -> bool:
        return self.expand is not None

    @property
    def commutative(self) -> bool:
        """Whether swapping its two arguments changes nothing (common-subexpression elimination reads it)."""
        return self.arity == 2 and self.elementwise and swapped(self.expr) == self.expr

    def identity(self, values: list) -> int | None:
        """The argument that the op returns unchanged when the others hold
        ``values`` (None where unknown): x * 1, x + 0, x - 0, x / 1."""
        if not self.elementwise or self.arity != 2:
            return None
        for i, value in enumerate(values):
            if value is not None and identity_arg(self.expr, i, value):
                return 1 - i
        return None


REGISTRY: dict[str, OpDef] = {}

# Element-wise expressions are written in these symbols.
X = sp.symbols("x0:4", real=True)
OUT = sp.Symbol("out", real=True)
COTANGENT = sp.Symbol("cotangent", real=True)


def swapped(expr: sp.Expr) -> sp.Expr:
    return expr.xreplace({X[0]: X[1], X[1]: X[0]})


@functools.lru_cache(maxsize=None)
def identity_arg(expr: sp.Expr, position: int, value: float) -> bool:
    """Whether ``expr`` with argument ``position`` equal to ``value`` is the other argument."""
    if not float(value).is_integer():
        return False
    return sp.simplify(expr.subs(X[position], sp.Integer(int(value)))) == X[1 - position]


def register(op: OpDef) -> OpDef:
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    REGISTRY[op.name] = op
    return op


def lookup(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(unknown_op(name)) from None


def unknown_op(name: str) -> str:
    """The message for an op no spec may call: the closest public names, and where all are listed."""
    public = sorted(n for n, op in REGISTRY.items() if op.public)
    close = difflib.get_close_matches(str(name), public, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown op {str(name)[:40]!r}{hint} (symgraph ops lists them all)"


def tensor_names(op: OpDef) -> list[str]:
    """What an op's tensor arguments are called in its signature (none listed for a variadic op)."""
    return list(op.arg_names) or ["x", "y", "z", "w"][: op.arity or 0]


def signature(op: OpDef) -> str:
    """How a spec calls the op: ``leaky_relu(x, slope=0.01)``."""
    tensors = tensor_names(op) if op.arity is not None else ["x", "y", "..."]
    attrs = [k if default is REQUIRED else f"{k}={default!r}" for k, default in op.attrs]
    return f"{op.name}({', '.join(tensors + attrs)})"


# -- what ops combine, shared by the families (OpDef.combines) ------------------
def combines_none(shapes, attrs):
    """Every element stays apart: each output element reads one of each argument's."""
    return tuple(() for _ in shapes)


def combines_all(shapes, attrs):
    return tuple(tuple(range(len(s))) for s in shapes)


def combines_axis(shapes, attrs):
    """Along the first argument's ``axis`` attribute (an int or a tuple of ints)."""
    axis = attrs["axis"]
    return (tuple(axis) if isinstance(axis, (tuple, list)) else (axis,),) + tuple(() for _ in shapes[1:])


def axes_text(axes) -> str:
    """``axis=`` as a spec (and NumPy) writes it: 1, or (0, 1)."""
    axes = tuple(axes)
    return str(axes[0]) if len(axes) == 1 else str(axes)


# -- shape helpers shared by the families -------------------------------------
def broadcast_dim(a: int, b: int) -> int:
    """NumPy's rule for one axis. The batch marker stays where both sides have
    it; a fixed size that meets the batch axis pins it (a plain int: that
    model runs on whole batches only, see ``codegen.common.merged_batch``)."""
    if a == b:
        return a if isinstance(a, Batch) == isinstance(b, Batch) else int(a)
    if a == 1:
        return b
    if b == 1:
        return a
    raise ValueError


def broadcast_shapes(*shapes: Shape) -> Shape:
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for axis in range(rank):
        dim = padded[0][axis]
        for s in padded[1:]:
            try:
                dim = broadcast_dim(dim, s[axis])
            except ValueError:
                shown = " and ".join(str(fmt_shape(s)) for s in shapes)
                raise ValueError(f"shapes {shown} do not broadcast") from None
        out.append(dim)
    return tuple(out)


def fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def norm_axis(axis: int, rank: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis!r} is out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axis: Any, rank: int) -> tuple[int, ...]:
    """``None`` -> all axes; an int or a sequence -> sorted non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = sorted({norm_axis(a, rank) for a in axes})
    if len(out) != len(axes):
        raise ValueError(f"axis {axis!r} repeats an axis")
    return tuple(out)


# -- building nodes -------------------------------------------------------------
def bind_attrs(op: OpDef, positional: list, keywords: dict) -> dict:
    names = [k for k, _ in op.attrs]
    if len(positional) > len(names):
        raise SpecError(f"{op.name}() takes {len(names)} attribute(s), got {len(positional)} extra argument(s)")
    bound = dict(zip(names, positional))
    for key, value in keywords.items():
        if key not in names:
            allowed = ", ".join(names) or "none"
            raise SpecError(f"{op.name}() got an unknown keyword {key!r} (allowed: {allowed})")
        if key in bound:
            raise SpecError(f"{op.name}() got {key!r} twice")
        bound[key] = value
    for key, default in op.attrs:
        if key not in bound:
            if default is REQUIRED:
                raise SpecError(f"{op.name}() is missing its attribute {key!r}")
            bound[key] = default
    return bound


def apply(g: Graph, name: str, args: list[str] | tuple[str, ...], attrs: dict | None = None, positional: list | None = None) -> str:
    """Add ``name(*args, **attrs)`` to ``g`` after checking it; return the node id.

    Raises :class:`SpecError` (without a node; the caller knows which spec
    entry it was building) on wrong arity, unknown keywords, dtype or shape.
    """
    op = lookup(name)
    args = list(args)
    if op.arity is None:
        if not args:
            raise SpecError(f"{name}() needs at least one tensor argument")
    elif len(args) != op.arity:
        raise SpecError(f"{name}() takes {op.arity} tensor argument(s), got {len(args)}")
    bound = bind_attrs(op, positional or [], dict(attrs or {}))
    for pos, arg in enumerate(args):
        dtype = g.dtype(arg)
        wanted = "int" if pos in op.int_args else "float"
        if dtype != wanted and pos not in op.any_args:
            raise SpecError(f"{name}() argument {pos + 1} ({display(arg)}) must be {wanted}, got {dtype}")
    shapes = [g.shape(a) for a in args]
    try:
        if op.canon is not None:
            bound = op.canon(shapes, bound)
        if op.macro:
            return op.expand(g, args, bound)
        shape = op.infer_shape(shapes, bound)
    except ValueError as exc:
        text = str(exc)
        for arg, arg_shape in zip(args, shapes):  # (16, 16) @ (32, 3) -> (batch=16, hid2=16) @ (hid=32, k=3)
            text = text.replace(fmt_shape(arg_shape), named_shape(g, arg), 1)
        raise SpecError(f"{name}(): {text}") from None
    return g.add_node(name, tuple(args), bound, shape, "float")


def named_shape(g: Graph, node: str) -> str:
    """``node``'s shape with the dims' names beside their sizes: those a leaf
    was declared with, else the batch axis, else the one dim of that size."""
    declared = g.get(node, "dim_names") or ()
    by_size: dict[int, list[str]] = {}
    for dim, size in g.dims.items():
        if not is_batch(size):
            by_size.setdefault(int(size), []).append(dim)
    texts = []
    for axis, size in enumerate(g.shape(node)):
        name = declared[axis] if axis < len(declared) else None
        if name is None and is_batch(size):
            name = "batch"
        if name is None and len(by_size.get(int(size), [])) == 1:
            name = by_size[int(size)][0]
        texts.append(f"{name}={int(size)}" if name else str(int(size)))
    return "(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")"


def const(g: Graph, value: float | int) -> str:
    """A scalar constant (a Batch value stays symbolic: it is ``n`` at run time)."""
    if not isinstance(value, Batch):
        value = float(value)
    return g.add_node("const", (), {"value": value}, (), "float")


def display(node: str) -> str:
    return "an expression" if node.startswith("~") else node
