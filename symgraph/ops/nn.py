"""Neural-network ops: embedding, conv1d, pooling, dropout, softmax and the losses.

Softmax, log-softmax and both cross-entropies are primitives rather than
compositions so that their emitters can use the stable log-sum-exp form and
their gradients are the closed forms, e.g. ``(softmax(z) - onehot(y)) / n``.
"""

from __future__ import annotations

from .reduce import count
from .registry import REQUIRED, OpDef, apply, combines_all, combines_axis, combines_none, const, fmt_shape, norm_axis, register


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def rank(shape: tuple, wanted: int, what: str) -> None:
    if len(shape) != wanted:
        raise ValueError(f"{what} must have rank {wanted}, got shape {fmt_shape(shape)}")


# -- embedding ---------------------------------------------------------------------
def embedding_shape(shapes, attrs):
    table, ids = shapes
    rank(table, 2, "the embedding table")
    return tuple(ids) + (table[1],)


def embedding_vjp(g, node, cotangent):
    table, ids = g.args(node)
    rows = int(g.shape(table)[0])
    return (apply(g, "embedding_backward", [ids, cotangent], {"rows": rows}), None)


register(
    OpDef(
        "embedding", 2, embedding_shape, embedding_vjp, int_args=(1,), arg_names=("E", "ids"), combines=lambda shapes, attrs: ((0,), ()),
        int_bound=lambda shapes, attrs: int(shapes[0][0]), doc="out[..., :] = E[ids[...], :]", example="embedding(E, ids)",
    )
)


def embedding_backward_shape(shapes, attrs):
    return (attrs["rows"], shapes[1][-1])


register(
    OpDef(
        "embedding_backward", 2, embedding_backward_shape, attrs=(("rows", REQUIRED),),
        int_args=(0,), public=False, doc="dE[r] = sum of cotangent rows whose id is r (scatter-add)",
    )
)


# -- conv1d over whole embedding rows -------------------------------------------------
def conv_canon(shapes, attrs):
    return {
        **attrs,
        "stride": positive_int("stride", attrs["stride"]),
        "padding": positive_int("padding", attrs["padding"], minimum=0),
    }


def conv_length(length: int, width: int, stride: int, padding: int, axis: str = "length", window: str = "kernel width") -> int:
    span = int(length) + 2 * padding - width
    if span < 0:
        padded = f"the padded {axis}" if padding else f"the {axis}"
        raise ValueError(f"{window} {width} exceeds {padded} {int(length) + 2 * padding}")
    return span // stride + 1


def conv1d_shape(shapes, attrs):
    x, kernel = shapes
    rank(x, 3, "conv1d input [batch, seq, c_in]")
    rank(kernel, 3, "conv1d kernel [width, c_in, c_out]")
    if x[2] != kernel[1]:
        raise ValueError(f"input channels differ: x {fmt_shape(x)} and kernel {fmt_shape(kernel)}")
    steps = conv_length(x[1], int(kernel[0]), attrs["stride"], attrs["padding"])
    return (x[0], steps, kernel[2])


def conv1d_vjp(g, node, cotangent):
    x, kernel = g.args(node)
    attrs = g.attrs(node)
    dx = apply(g, "conv1d_backward_input", [cotangent, kernel], {**attrs, "length": int(g.shape(x)[1])})
    dk = apply(g, "conv1d_backward_kernel", [x, cotangent], {**attrs, "width": int(g.shape(kernel)[0])})
    return dx, dk


CONV_ATTRS = (("stride", 1), ("padding", 0))
register(
    OpDef(
        "conv1d", 2, conv1d_shape, conv1d_vjp, attrs=CONV_ATTRS, canon=conv_canon, arg_names=("x", "K"),
        combines=lambda shapes, attrs: ((1, 2), (0, 1, 2)),  # a window of steps and channels, the whole kernel
        doc="y[b, t, o] = sum_{w, c} xpad[b, t*stride + w, c] K[w, c, o]", example="conv1d(seq, K, stride=1, padding=1)",
    )
)
register(
    OpDef(
        "conv1d_backward_input", 2,
        lambda shapes, attrs: (shapes[0][0], attrs["length"], shapes[1][1]),
        attrs=CONV_ATTRS + (("length", REQUIRED),), public=False,
        doc="dx[b, t*stride + w - padding, c] += dy[b, t, o] K[w, c, o]",
    )
)
register(
    OpDef(
        "conv1d_backward_kernel", 2,
        lambda shapes, attrs: (attrs["width"], shapes[0][2], shapes[1][2]),
        attrs=CONV_ATTRS + (("width", REQUIRED),), public=False,
        doc="dK[w, c, o] = sum_{b, t} xpad[b, t*stride + w, c] dy[b, t, o]",
    )
)


# -- pooling over the sequence axis ---------------------------------------------------
def pool_canon(shapes, attrs):
    size = positive_int("size", attrs["size"])
    stride = size if attrs["stride"] is None else positive_int("stride", attrs["stride"])
    return {"size": size, "stride": stride}


def pool_shape(shapes, attrs):
    (x,) = shapes
    rank(x, 3, "pooling input [batch, seq, channels]")
    return (x[0], conv_length(x[1], attrs["size"], attrs["stride"], 0, "length", "pool size"), x[2])


def max_pool_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "max_pool1d_backward", [x, cotangent], g.attrs(node)),)


def avg_pool_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "avg_pool1d_backward", [cotangent], {**g.attrs(node), "length": int(g.shape(x)[1])}),)


POOL_ATTRS = (("size", REQUIRED), ("stride", None))
register(
    OpDef(
        "max_pool1d", 1, pool_shape, max_pool_vjp, attrs=POOL_ATTRS, canon=pool_canon, combines=lambda shapes, attrs: ((1,),),
        doc="y[b, t, c] = max_k x[b, t*stride + k, c]", example="max_pool1d(seq, 3, stride=2)",
    )
)
register(
    OpDef(
        "avg_pool1d", 1, pool_shape, avg_pool_vjp, attrs=POOL_ATTRS, canon=pool_canon, combines=lambda shapes, attrs: ((1,),),
        linear_in=(0,),
        doc="y[b, t, c] = mean_k x[b, t*stride + k, c]", example="avg_pool1d(seq, 2)",
    )
)
register(
    OpDef(
        "max_pool1d_backward", 2, lambda shapes, attrs: shapes[0],
        attrs=(("size", REQUIRED), ("stride", REQUIRED)), public=False,
        doc="dy[b, t, c] routed to the first argmax of its window",
    )
)
register(
    OpDef(
        "avg_pool1d_backward", 1,
        lambda shapes, attrs: (shapes[0][0], attrs["length"], shapes[0][2]),
        attrs=(("size", REQUIRED), ("stride", REQUIRED), ("length", REQUIRED)), public=False,
        doc="dy[b, t, c] / size spread over its window",
    )
)


def same_shape(shapes, attrs):
    return shapes[0]


# -- conv2d and 2-D pooling over images [batch, height, width, channels] ----------------
def conv2d_shape(shapes, attrs):
    x, kernel = shapes
    rank(x, 4, "conv2d input [batch, height, width, c_in]")
    rank(kernel, 4, "conv2d kernel [kh, kw, c_in, c_out]")
    if x[3] != kernel[2]:
        raise ValueError(f"input channels differ: x {fmt_shape(x)} and kernel {fmt_shape(kernel)}")
    stride, padding = attrs["stride"], attrs["padding"]
    return (x[0], conv_length(x[1], int(kernel[0]), stride, padding, "height", "kernel height"),
            conv_length(x[2], int(kernel[1]), stride, padding, "width"), kernel[3])


def conv2d_vjp(g, node, cotangent):
    x, kernel = g.args(node)
    attrs = g.attrs(node)
    _, height, width, _ = g.shape(x)
    kh, kw = (int(d) for d in g.shape(kernel)[:2])
    dx = apply(g, "conv2d_backward_input", [cotangent, kernel], {**attrs, "height": int(height), "width": int(width)})
    dk = apply(g, "conv2d_backward_kernel", [x, cotangent], {**attrs, "kh": kh, "kw": kw})
    return dx, dk


register(
    OpDef(
        "conv2d", 2, conv2d_shape, conv2d_vjp, attrs=CONV_ATTRS, canon=conv_canon, arg_names=("x", "K"),
        combines=lambda shapes, attrs: ((1, 2, 3), (0, 1, 2, 3)),  # a window of pixels and channels, the whole kernel
        doc="y[b, i, j, o] = sum_{u, v, c} xpad[b, i*stride + u, j*stride + v, c] K[u, v, c, o]",
        example="conv2d(img, K2, padding=1)",
    )
)
register(
    OpDef(
        "conv2d_backward_input", 2,
        lambda shapes, attrs: (shapes[0][0], attrs["height"], attrs["width"], shapes[1][2]),
        attrs=CONV_ATTRS + (("height", REQUIRED), ("width", REQUIRED)), public=False,
        doc="dx[b, i*stride + u - padding, j*stride + v - padding, c] += dy[b, i, j, o] K[u, v, c, o]",
    )
)
register(
    OpDef(
        "conv2d_backward_kernel", 2,
        lambda shapes, attrs: (attrs["kh"], attrs["kw"], shapes[0][3], shapes[1][3]),
        attrs=CONV_ATTRS + (("kh", REQUIRED), ("kw", REQUIRED)), public=False,
        doc="dK[u, v, c, o] = sum_{b, i, j} xpad[b, i*stride + u, j*stride + v, c] dy[b, i, j, o]",
    )
)


def pool2d_shape(shapes, attrs):
    (x,) = shapes
    rank(x, 4, "2-D pooling input [batch, height, width, channels]")
    size, stride = attrs["size"], attrs["stride"]
    return (x[0], conv_length(x[1], size, stride, 0, "height", "pool size"), conv_length(x[2], size, stride, 0, "width", "pool size"), x[3])


def max_pool2d_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "max_pool2d_backward", [x, cotangent], g.attrs(node)),)


def avg_pool2d_vjp(g, node, cotangent):
    (x,) = g.args(node)
    _, height, width, _ = g.shape(x)
    return (apply(g, "avg_pool2d_backward", [cotangent], {**g.attrs(node), "height": int(height), "width": int(width)}),)


register(
    OpDef(
        "max_pool2d", 1, pool2d_shape, max_pool2d_vjp, attrs=POOL_ATTRS, canon=pool_canon, combines=lambda shapes, attrs: ((1, 2),),
        doc="y[b, i, j, c] = max_{u, v} x[b, i*stride + u, j*stride + v, c]", example="max_pool2d(img, 2)",
    )
)
register(
    OpDef(
        "avg_pool2d", 1, pool2d_shape, avg_pool2d_vjp, attrs=POOL_ATTRS, canon=pool_canon, combines=lambda shapes, attrs: ((1, 2),),
        linear_in=(0,), doc="y[b, i, j, c] = mean_{u, v} x[b, i*stride + u, j*stride + v, c]", example="avg_pool2d(img, 2)",
    )
)
register(
    OpDef(
        "max_pool2d_backward", 2, lambda shapes, attrs: shapes[0], attrs=(("size", REQUIRED), ("stride", REQUIRED)), public=False,
        doc="dy[b, i, j, c] routed to the first argmax of its window, in row-major order",
    )
)
register(
    OpDef(
        "avg_pool2d_backward", 1,
        lambda shapes, attrs: (shapes[0][0], attrs["height"], attrs["width"], shapes[0][3]),
        attrs=(("size", REQUIRED), ("stride", REQUIRED), ("height", REQUIRED), ("width", REQUIRED)), public=False,
        doc="dy[b, i, j, c] / size**2 spread over its window",
    )
)



# -- nearest-neighbour upsampling ------------------------------------------------------
def upsample2d_shape(shapes, attrs):
    (x,) = shapes
    rank(x, 4, "upsampling input [batch, height, width, channels]")
    factor = attrs["factor"]
    return (x[0], x[1] * factor, x[2] * factor, x[3])


def upsample2d_vjp(g, node, cotangent):
    # each input pixel was copied to a factor x factor block: its gradient is the block's sum
    factor = g.attrs(node)["factor"]
    block_mean = apply(g, "avg_pool2d", [cotangent], {"size": factor, "stride": factor})
    return (apply(g, "mul", [block_mean, const(g, factor * factor)]),)


register(
    OpDef(
        "upsample2d", 1, upsample2d_shape, upsample2d_vjp, attrs=(("factor", REQUIRED),),
        canon=lambda shapes, attrs: {"factor": positive_int("factor", attrs["factor"])},
        combines=lambda shapes, attrs: ((1, 2),), linear_in=(0,),
        doc="y[b, i, j, c] = x[b, i // factor, j // factor, c] (nearest neighbour)", example="upsample2d(img, 2)",
    )
)

# -- layer normalisation ---------------------------------------------------------------
def layer_norm_canon(shapes, attrs):
    eps = attrs["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if not shapes[0]:
        raise ValueError("layer_norm needs an axis to normalise over, got a scalar")
    if isinstance(attrs["axis"], bool) or not isinstance(attrs["axis"], int):
        raise ValueError(f"axis must be one axis, an integer, got {attrs['axis']!r}")
    return {"axis": norm_axis(attrs["axis"], len(shapes[0])), "eps": float(eps)}


def layer_norm_vjp(g, node, cotangent):
    (x,) = g.args(node)
    return (apply(g, "layer_norm_backward", [x, cotangent], g.attrs(node)),)


register(
    OpDef(
        "layer_norm", 1, same_shape, layer_norm_vjp, attrs=(("axis", -1), ("eps", 1e-5)), canon=layer_norm_canon,
        combines=combines_axis,
        doc="(x - mean x) / sqrt(var x + eps) along axis (biased variance, no gain or bias)", example="layer_norm(x)",
    )
)
register(
    OpDef(
        "layer_norm_backward", 2, lambda shapes, attrs: shapes[0], attrs=(("axis", REQUIRED), ("eps", REQUIRED)), public=False,
        doc="dx = (dy - mean dy - y mean(dy y)) / sqrt(var x + eps), y the normalised x, in one pass",
    )
)


# -- dropout ------------------------------------------------------------------------
def dropout_expand(g, args, attrs):
    p = attrs["p"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"p must be a number in [0, 1), got {p!r}")
    if p == 0:
        return args[0]
    index = len(g.nodes_of("dropout_mask"))
    shape = g.shape(args[0])
    mask = g.add_node("dropout_mask", (), {"p": float(p), "index": index, "shape": shape}, shape, "float")
    return apply(g, "mul", [args[0], mask])


register(OpDef("dropout", 1, attrs=(("p", REQUIRED),), expand=dropout_expand, doc="x * mask / (1 - p) in training", example="dropout(x, 0.5)"))
register(
    OpDef(
        "dropout_mask", 0, lambda shapes, attrs: attrs["shape"], lambda g, node, cot: (),
        attrs=(("p", REQUIRED), ("index", REQUIRED), ("shape", REQUIRED)), public=False, random=True, combines=combines_none,
        doc="1/(1-p) with probability 1-p, else 0, in training; 1 in evaluation",
    )
)


# -- softmax family ---------------------------------------------------------------------
def axis_canon(shapes, attrs):
    if not shapes[0] and attrs["axis"] in (-1, 0):  # a scalar: its one axis is that of its one-element vector
        return {**attrs, "axis": 0}
    return {**attrs, "axis": norm_axis(attrs["axis"], len(shapes[0]))}


def over_vector_of_scalar(name: str):
    """``expand`` of an op along an axis: a scalar goes through it as a one-element vector."""

    def expand(g, args, attrs):
        (x,) = args
        if g.shape(x) == ():
            vector = apply(g, "reshape", [x], {"shape": (1,)})
            return apply(g, "reshape", [apply(g, name, [vector], attrs)], {"shape": ()})
        return g.add_node(name, (x,), attrs, g.shape(x), "float")

    return expand


def softmax_vjp(g, node, cotangent):
    axis = g.attrs(node)["axis"]
    weighted = apply(g, "sum", [apply(g, "mul", [cotangent, node])], {"axis": axis, "keepdims": True})
    return (apply(g, "mul", [node, apply(g, "sub", [cotangent, weighted])]),)


def log_softmax_vjp(g, node, cotangent):
    axis = g.attrs(node)["axis"]
    total = apply(g, "sum", [cotangent], {"axis": axis, "keepdims": True})
    return (apply(g, "sub", [cotangent, apply(g, "mul", [apply(g, "exp", [node]), total])]),)


register(
    OpDef(
        "softmax", 1, same_shape, softmax_vjp, attrs=(("axis", -1),), canon=axis_canon, combines=combines_axis,
        expand=over_vector_of_scalar("softmax"),
        doc="exp(x - max x) / sum exp(x - max x)", example="softmax(x @ W, axis=-1)",
    )
)
register(
    OpDef(
        "log_softmax", 1, same_shape, log_softmax_vjp, attrs=(("axis", -1),), canon=axis_canon, combines=combines_axis,
        expand=over_vector_of_scalar("log_softmax"),
        doc="x - max x - log sum exp(x - max x)", example="log_softmax(x @ W)",
    )
)


def onehot_shape(shapes, attrs):
    return tuple(shapes[0]) + (attrs["classes"],)


register(
    OpDef(
        "onehot", 1, onehot_shape, attrs=(("classes", REQUIRED),), int_args=(0,), public=False, combines=combines_none,
        shown=lambda a, attrs, ranks: f"onehot({a[0]})",
        int_bound=lambda shapes, attrs: attrs["classes"], doc="onehot(y)[..., k] = (y[...] == k)",
    )
)


def cross_entropy_shape(shapes, attrs):
    logits, labels = shapes
    if len(logits) < 1 or tuple(logits[:-1]) != tuple(labels):
        raise ValueError(f"labels {fmt_shape(labels)} must have the shape of logits {fmt_shape(logits)} without its last axis")
    return ()


def cross_entropy_vjp(g, node, cotangent):
    logits, labels = g.args(node)
    shape = g.shape(logits)
    diff = apply(
        g, "sub",
        [apply(g, "softmax", [logits], {"axis": -1}), apply(g, "onehot", [labels], {"classes": int(shape[-1])})],
    )
    scale = apply(g, "div", [cotangent, count(g, shape[:-1], tuple(range(len(shape) - 1)))])
    return (apply(g, "mul", [diff, scale]), None)


register(
    OpDef(
        "cross_entropy", 2, cross_entropy_shape, cross_entropy_vjp, int_args=(1,), arg_names=("logits", "y"),
        combines=combines_all, averages=True,
        int_bound=lambda shapes, attrs: shapes[0][-1],
        doc="mean over examples of logsumexp(z) - z[y]", example="cross_entropy(x @ W, labels)",
    )
)


def softmax_cross_entropy_grad_shape(shapes, attrs):
    logits, labels, scale = shapes
    cross_entropy_shape([logits, labels], attrs)
    if tuple(scale) != ():
        raise ValueError(f"the scale must be a scalar, got {fmt_shape(scale)}")
    return logits


register(
    OpDef(
        "softmax_cross_entropy_grad", 3, softmax_cross_entropy_grad_shape, int_args=(1,), public=False,
        int_bound=lambda shapes, attrs: shapes[0][-1],
        doc="(softmax(z) - onehot(y)) * s in one pass: cross-entropy's gradient, fused by a codegen pass",
    )
)


def binary_cross_entropy_shape(shapes, attrs):
    z, y = shapes
    if tuple(z) != tuple(y):
        raise ValueError(f"logits {fmt_shape(z)} and targets {fmt_shape(y)} differ")
    return ()


def binary_cross_entropy_vjp(g, node, cotangent):
    z, y = g.args(node)
    scale = apply(g, "div", [cotangent, count(g, g.shape(z), tuple(range(len(g.shape(z)))))])
    target = y
    if g.dtype(y) == "int":  # 0/1 labels as floats: the second column of their one-hot rows
        rows = apply(g, "onehot", [y], {"classes": 2})
        column = apply(g, "slice", [rows], {"axis": len(g.shape(y)), "start": 1, "stop": 2})
        target = apply(g, "reshape", [column], {"shape": tuple(g.shape(y))})
    dz = apply(g, "mul", [apply(g, "sub", [apply(g, "sigmoid", [z]), target]), scale])
    dy = None if g.dtype(y) == "int" else apply(g, "mul", [apply(g, "neg", [z]), scale])
    return dz, dy


register(
    OpDef(
        "binary_cross_entropy", 2, binary_cross_entropy_shape, binary_cross_entropy_vjp, arg_names=("z", "y"),
        any_args=(1,), int_bound=lambda shapes, attrs: 2, combines=combines_all, averages=True,
        doc="mean of max(z, 0) - z*y + log(1 + exp(-|z|)), from logits z", example="binary_cross_entropy(x @ v, flags)",
    )
)


def mse_expand(g, args, attrs):
    pred, target = args
    shapes = [g.shape(pred), g.shape(target)]
    if shapes[0] != shapes[1] and () not in shapes:
        # [batch, 1] against [batch] would broadcast to [batch, batch]: every prediction against every target
        raise ValueError(f"pred {fmt_shape(shapes[0])} and target {fmt_shape(shapes[1])} differ in shape; "
                         "reshape one so they match (a broadcast would compare every prediction with every target)")
    err = apply(g, "sub", [pred, target])
    return apply(g, "mean", [apply(g, "pow", [err], {"p": 2.0})])


register(OpDef("mse", 2, expand=mse_expand, arg_names=("pred", "target"), doc="mean((pred - target) ** 2)", example="mse(x * v, t)"))
