"""Matrix products and shape ops: matmul, transpose, reshape, flatten, concat, slice."""

from __future__ import annotations

from ..ir import is_batch, numel
from .registry import (
    REQUIRED,
    OpDef,
    apply,
    axes_text,
    broadcast_shapes,
    combines_axis,
    combines_none,
    fmt_shape,
    norm_axis,
    register,
)


def swap_last(g, node: str) -> str:
    rank = len(g.shape(node))
    axes = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    return apply(g, "transpose", [node], {"axes": axes})


# -- matmul ---------------------------------------------------------------------
def matmul_shape(shapes, attrs):
    a, b = shapes
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"@ needs operands of rank 2 or more, got {fmt_shape(a)} and {fmt_shape(b)}")
    if a[-1] != b[-2]:
        raise ValueError(f"inner sizes differ: {fmt_shape(a)} @ {fmt_shape(b)}")
    try:
        batch = broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        raise ValueError(f"batch axes of {fmt_shape(a)} @ {fmt_shape(b)} do not broadcast") from None
    return batch + (a[-2], b[-1])


def matmul_combines(shapes, attrs):
    """The inner axis: the last of a, the second last of b."""
    a, b = shapes
    return ((len(a) - 1,), (len(b) - 2,))


def matmul_vjp(g, node, cotangent):
    a, b = g.args(node)
    # Batch axes that b (or a) lacks are summed away by the driver's sum_to.
    return (
        apply(g, "matmul", [cotangent, swap_last(g, b)]),
        apply(g, "matmul", [swap_last(g, a), cotangent]),
    )


def matmul_expand(g, args, attrs):
    """numpy.matmul's rule for vectors: a 1-D left operand is a row, a 1-D right
    one a column, and that axis is dropped from the result (vector @ vector is a
    scalar). The product itself is always of matrices or their stacks."""
    a, b = args
    rows, cols = len(g.shape(a)) == 1, len(g.shape(b)) == 1
    if rows:
        a = apply(g, "reshape", [a], {"shape": (1, g.shape(a)[0])})
    if cols:
        b = apply(g, "reshape", [b], {"shape": (g.shape(b)[0], 1)})
    shapes = [g.shape(a), g.shape(b)]
    if not shapes[0] or not shapes[1]:
        raise ValueError(f"@ needs operands of rank 1 or more, got {fmt_shape(g.shape(args[0]))} and {fmt_shape(g.shape(args[1]))}")
    product = g.add_node("matmul", (a, b), attrs, matmul_shape(shapes, attrs), "float")
    if not (rows or cols):
        return product
    shape = g.shape(product)
    kept = shape[:-2] + (() if rows else shape[-2:-1]) + (() if cols else shape[-1:])
    return apply(g, "reshape", [product], {"shape": tuple(kept)})


register(
    OpDef(
        "matmul", 2, matmul_shape, matmul_vjp, expand=matmul_expand, combines=matmul_combines, linear_in=(0, 1),
        shown=lambda a, attrs, ranks: f"{a[0]} @ {a[1]}",
        doc="C[..., i, j] = sum_k A[..., i, k] B[..., k, j]; a vector is a row on the left, a column on the right", example="x @ W",
    )
)


def matvec_shape(shapes, attrs):
    m, v = shapes
    if len(m) != 2 or len(v) != 1 or v[0] != m[1 if not attrs["transposed"] else 0]:
        raise ValueError(f"matvec takes a matrix and a vector of its {'row' if attrs['transposed'] else 'column'} count, "
                         f"got {fmt_shape(m)} and {fmt_shape(v)}")
    return (m[1],) if attrs["transposed"] else (m[0],)


register(
    OpDef(
        "matvec", 2, matvec_shape, attrs=(("transposed", False),), public=False, linear_in=(0, 1),
        shown=lambda a, attrs, ranks: f"{a[1]} @ {a[0]}" if attrs["transposed"] else f"{a[0]} @ {a[1]}",
        combines=lambda shapes, attrs: ((0,) if attrs["transposed"] else (1,), (0,)),
        doc="M @ v, or with transposed v @ M: a matrix times a vector, with no [rows, cols] array of products between",
    )
)


def matmul_bias_shape(shapes, attrs):
    a, b, bias = shapes
    product = matmul_shape([a, b], attrs)
    if len(product) != 2 or tuple(bias) != product[-1:]:
        raise ValueError(f"matmul_bias takes two matrices and a vector of the product's columns, got {fmt_shape(a)}, {fmt_shape(b)} and {fmt_shape(bias)}")
    return product


register(
    OpDef(
        "matmul_bias", 3, matmul_bias_shape, public=False, linear_in=(0, 1, 2),
        shown=lambda a, attrs, ranks: f"{a[0]} @ {a[1]} + {a[2]}",
        combines=lambda shapes, attrs: ((1,), (0,), ()),
        doc="x @ W + b for matrices x, W and a vector b added to every row: one product that starts from b",
    )
)


def summed_products_text(a: list[str], attrs: dict, ranks: list[int]) -> str:
    lead = tuple(range(ranks[0] - 2))
    left = f"transpose({a[0]}, axes={lead + (ranks[0] - 1, ranks[0] - 2)})" if attrs["transposed"] else a[0]
    return f"sum({left} @ {a[1]}, axis={axes_text(lead)})"


def matmul_sum_shape(shapes, attrs):
    a, b = shapes
    m, k = (a[-1], a[-2]) if attrs["transposed"] else (a[-2], a[-1])
    if len(a) < 3 or len(a) != len(b) or tuple(a[:-2]) != tuple(b[:-2]) or k != b[-2]:
        raise ValueError(f"matmul_sum takes stacks of matrices with the same leading axes, got {fmt_shape(a)} and {fmt_shape(b)}")
    return (m, b[-1])


register(
    OpDef(
        "matmul_sum", 2, matmul_sum_shape, attrs=(("transposed", False),), public=False, linear_in=(0, 1), shown=summed_products_text,
        combines=lambda shapes, attrs: (tuple(range(len(shapes[0]) - 2)) + ((len(shapes[0]) - (2 if attrs["transposed"] else 1)),),
                                        tuple(range(len(shapes[1]) - 1))),
        doc="sum over the leading axes i of a[i] @ b[i] (a[i].T @ b[i] with transposed): the weight gradient of a batched product, as one product",
    )
)


# -- transpose --------------------------------------------------------------------
def transpose_canon(shapes, attrs):
    rank = len(shapes[0])
    axes = attrs["axes"]
    if axes is None:
        axes = tuple(reversed(range(rank)))
    if not isinstance(axes, (tuple, list)) or sorted(norm_axis(a, rank) for a in axes) != list(range(rank)):
        raise ValueError(f"axes {axes!r} is not a permutation of the {rank} axes")
    return {"axes": tuple(norm_axis(a, rank) for a in axes)}


def transpose_shape(shapes, attrs):
    return tuple(shapes[0][a] for a in attrs["axes"])


def transpose_vjp(g, node, cotangent):
    axes = g.attrs(node)["axes"]
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return (apply(g, "transpose", [cotangent], {"axes": inverse}),)


register(
    OpDef(
        "transpose", 1, transpose_shape, transpose_vjp,
        attrs=(("axes", None),), canon=transpose_canon, combines=combines_none, linear_in=(0,), view=True, doc="y[i_axes[0], ...] = x[i_0, ...]", example="transpose(seq, axes=[0, 2, 1])",
    )
)


# -- reshape ----------------------------------------------------------------------
def reshape_canon(shapes, attrs):
    shape = attrs["shape"]
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ValueError(f"shape must be a list of integers, got {shape!r}")
    if sum(1 for d in shape if d == -1) > 1 or any(d == 0 or d < -1 for d in shape):
        raise ValueError(f"shape {list(shape)} is not a valid target shape")
    total = numel(shapes[0])
    known = numel(d for d in shape if d != -1)
    if -1 in shape:
        if total % known:
            raise ValueError(f"cannot reshape {fmt_shape(shapes[0])} to {list(shape)}")
        shape = tuple(total // known if d == -1 else d for d in shape)
    if numel(shape) != total:
        raise ValueError(f"cannot reshape {fmt_shape(shapes[0])} ({total} elements) to {fmt_shape(shape)}")
    source = shapes[0]
    if source and is_batch(source[0]) and shape and numel(shape[1:]) == numel(source[1:]):
        # the leading axis stays the batch: it holds as many rows at any batch size
        shape = (source[0],) + tuple(shape[1:])
    return {"shape": tuple(shape)}


def reshape_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "reshape", [cotangent], {"shape": g.shape(x)}),)


register(
    OpDef(
        "reshape", 1, lambda shapes, attrs: attrs["shape"], reshape_vjp,
        attrs=(("shape", REQUIRED),), canon=reshape_canon, combines=combines_none, linear_in=(0,), view=True, doc="same elements in C order, new shape", example="reshape(seq, [batch, 18])",
    )
)


def flatten_expand(g, args, attrs):
    shape = g.shape(args[0])
    if len(shape) < 2:
        return args[0]
    return apply(g, "reshape", args, {"shape": (shape[0], numel(shape[1:]))})


register(OpDef("flatten", 1, expand=flatten_expand, doc="[n, d1, d2, ...] -> [n, d1*d2*...]", example="flatten(seq)"))


# -- concat and its adjoint, slice ------------------------------------------------
def concat_canon(shapes, attrs):
    axis = attrs["axis"]
    return {"axis": norm_axis(axis, len(shapes[0]))}


def concat_shape(shapes, attrs):
    axis = attrs["axis"]
    first = shapes[0]
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis):
            raise ValueError(f"shapes {fmt_shape(first)} and {fmt_shape(s)} differ off axis {axis}")
    total = sum(int(s[axis]) for s in shapes)
    return first[:axis] + (total,) + first[axis + 1 :]


def concat_vjp(g, node, cotangent):
    axis = g.attrs(node)["axis"]
    grads, start = [], 0
    for arg in g.args(node):
        stop = start + int(g.shape(arg)[axis])
        grads.append(apply(g, "slice", [cotangent], {"axis": axis, "start": start, "stop": stop}))
        start = stop
    return tuple(grads)


register(
    OpDef(
        "concat", None, concat_shape, concat_vjp,
        attrs=(("axis", REQUIRED),), canon=concat_canon, combines=combines_none, doc="join along an axis", example="concat(x, x * 2, axis=1)",
    )
)


def slice_shape(shapes, attrs):
    (x,) = shapes
    axis, start, stop = attrs["axis"], attrs["start"], attrs["stop"]
    if not 0 <= start < stop <= x[axis]:
        raise ValueError(f"slice {start}:{stop} is out of range for axis {axis} of {fmt_shape(x)}")
    return x[:axis] + (stop - start,) + x[axis + 1 :]


def slice_vjp(g, node, cotangent):
    (x,) = g.args(node)
    attrs = g.attrs(node)
    return (apply(g, "pad_slice", [cotangent], {**attrs, "size": int(g.shape(x)[attrs["axis"]])}),)


register(
    OpDef(
        "slice", 1, slice_shape, slice_vjp, public=False, combines=combines_axis, linear_in=(0,), view=True,
        attrs=(("axis", REQUIRED), ("start", REQUIRED), ("stop", REQUIRED)),
        doc="x[..., start:stop, ...] along axis",
    )
)


def pad_slice_shape(shapes, attrs):
    (x,) = shapes
    axis = attrs["axis"]
    return x[:axis] + (attrs["size"],) + x[axis + 1 :]


def pad_slice_vjp(g, node, cotangent):
    attrs = g.attrs(node)
    return (apply(g, "slice", [cotangent], {k: attrs[k] for k in ("axis", "start", "stop")}),)


register(
    OpDef(
        "pad_slice", 1, pad_slice_shape, pad_slice_vjp, public=False,
        attrs=(("axis", REQUIRED), ("start", REQUIRED), ("stop", REQUIRED), ("size", REQUIRED)),
        doc="zeros of the given size on axis, with x placed at start:stop",
    )
)
