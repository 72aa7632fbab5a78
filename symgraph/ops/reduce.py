"""Reductions and their adjoints: sum, mean, max; broadcast_to, sum_to, max_backward."""

from __future__ import annotations

from ..ir import Batch
from .registry import (
    REQUIRED,
    OpDef,
    combines_axis,
    apply,
    const,
    fmt_shape,
    norm_axes,
    norm_axis,
    register,
)


def reduce_canon(shapes, attrs):
    return {**attrs, "axis": norm_axes(attrs["axis"], len(shapes[0]))}


def reduce_shape(shapes, attrs):
    (x,) = shapes
    axes = attrs["axis"]
    if attrs.get("keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def expand_back(g, node: str, cotangent: str) -> str:
    """The cotangent of a reduction, broadcast back to the reduced input's shape."""
    (x,) = g.args(node)
    attrs = g.attrs(node)
    missing = () if attrs.get("keepdims") else attrs["axis"]
    return apply(g, "broadcast_to", [cotangent], {"shape": g.shape(x), "axes": missing})


def count(g, shape: tuple, axes: tuple[int, ...]) -> str:
    """The number of elements reduced, as a constant; the batch axis counts at run time."""
    static = 1
    node = None
    for axis in axes:
        if isinstance(shape[axis], Batch):  # each batch axis counts n (x[:, None] - x[None] has two)
            size = const(g, shape[axis])
            node = size if node is None else apply(g, "mul", [node, size])
        else:
            static *= int(shape[axis])
    if node is None:
        return const(g, static)
    return node if static == 1 else apply(g, "mul", [node, const(g, static)])


def sum_vjp(g, node, cotangent):
    return (expand_back(g, node, cotangent),)


def mean_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "div", [expand_back(g, node, cotangent), count(g, g.shape(x), g.attrs(node)["axis"])]),)


def max_vjp(g, node, cotangent):
    (x,) = g.args(node)
    attrs = g.attrs(node)
    return (apply(g, "max_backward", [x, expand_back(g, node, cotangent)], {"axis": attrs["axis"]}),)


REDUCE_ATTRS = (("axis", None), ("keepdims", False))
register(OpDef("sum", 1, reduce_shape, sum_vjp, attrs=REDUCE_ATTRS, canon=reduce_canon, combines=combines_axis, linear_in=(0,), doc="sum over axes", example="sum(x * x, axis=1)"))
register(OpDef("mean", 1, reduce_shape, mean_vjp, attrs=REDUCE_ATTRS, canon=reduce_canon, combines=combines_axis, averages=True, linear_in=(0,), doc="sum over axes / count", example="mean(x, axis=0)"))


def max_canon(shapes, attrs):
    axis = attrs["axis"]
    if axis is None or isinstance(axis, bool) or not isinstance(axis, (int, tuple, list)):
        raise ValueError(f"max() takes an integer axis or a list of them, got {axis!r}")
    return {**attrs, "axis": norm_axes(axis, len(shapes[0]))}


def max_expand(g, args, attrs):
    """Over several axes, one max per axis (the last first, so the others keep
    their numbers): the same largest element, and the batch axis stays whole."""
    node = args[0]
    for axis in reversed(attrs["axis"]):
        single = {"axis": (axis,), "keepdims": attrs["keepdims"]}
        node = g.add_node("max", (node,), single, reduce_shape([g.shape(node)], single), "float")
    return node


register(
    OpDef(
        "max", 1, reduce_shape, max_vjp, attrs=(("axis", REQUIRED), ("keepdims", False)),
        canon=max_canon, expand=max_expand, combines=combines_axis,
        doc="largest element along the given axes (gradient to the first maximum)", example="max(seq, axis=1)",
    )
)


def max_backward_shape(shapes, attrs):
    return shapes[0]


register(
    OpDef(
        "max_backward", 2, max_backward_shape, attrs=(("axis", REQUIRED),), public=False,
        doc="cotangent placed at the first argmax of x along axis, zero elsewhere",
    )
)


# -- broadcasting and its adjoint ---------------------------------------------------
def broadcast_to_shape(shapes, attrs):
    (x,) = shapes
    shape, axes = attrs["shape"], attrs["axes"]
    kept = [d for i, d in enumerate(shape) if i not in axes]
    if len(kept) < len(x):
        raise ValueError(f"cannot broadcast {fmt_shape(x)} to {fmt_shape(shape)}")
    x = (1,) * (len(kept) - len(x)) + tuple(x)
    if any(a != 1 and a != b for a, b in zip(x, kept)):
        raise ValueError(f"cannot broadcast {fmt_shape(x)} to {fmt_shape(shape)}")
    return tuple(shape)


def broadcast_to_vjp(g, node, cotangent):
    (x,) = g.args(node)
    axes = g.attrs(node)["axes"]
    if axes:
        cotangent = apply(g, "sum", [cotangent], {"axis": axes})
    return (sum_to(g, cotangent, g.shape(x)),)


def sum_to(g, node: str, shape: tuple) -> str:
    """``node`` summed down to ``shape`` (a no-op when the shapes agree)."""
    if tuple(g.shape(node)) == tuple(shape):
        return node
    return apply(g, "sum_to", [node], {"shape": shape})


register(
    OpDef(
        "broadcast_to", 1, broadcast_to_shape, broadcast_to_vjp, public=False, view=True,
        attrs=(("shape", REQUIRED), ("axes", ())),
        doc="insert size-1 axes at axes, then broadcast to shape (NumPy rules)",
    )
)


def sum_to_axes(src: tuple, dst: tuple) -> tuple[int, tuple[int, ...]]:
    """Summing ``src`` to ``dst``: the number of leading axes dropped, and the
    axes (of ``src``) that broadcasting stretched from size 1."""
    lead = len(src) - len(dst)
    return lead, tuple(lead + i for i, d in enumerate(dst) if d == 1 and src[lead + i] != 1)


def sum_to_shape(shapes, attrs):
    (x,) = shapes
    shape = attrs["shape"]
    lead = len(x) - len(shape)
    if lead < 0 or any(d != 1 and d != s for d, s in zip(shape, x[lead:])):
        raise ValueError(f"cannot sum {fmt_shape(x)} to {fmt_shape(shape)}")
    return tuple(shape)


def sum_to_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "broadcast_to", [cotangent], {"shape": g.shape(x), "axes": ()}),)



register(
    OpDef(
        "sum_to", 1, sum_to_shape, sum_to_vjp, attrs=(("shape", REQUIRED),), public=False,
        doc="sum over the axes that broadcasting to x's shape added (undoes broadcasting)",
    )
)
