"""A differential fuzzer: random specs over every public op, run through both
targets and both pipelines, against an oracle that shares no code with symgraph.

The oracle is a small NumPy interpreter of the spec's own text (Python's
``ast`` over each expression, each op written out here in float64 from its
documented meaning) plus central differences of the loss it computes. It
imports nothing from symgraph; a disagreement is a bug in symgraph or here.

A case is one seed: ``generate(seed)`` gives a spec (YAML text) and the
values to run it on; ``run_case(seed)`` compiles it four ways (NumPy and C,
``CODEGEN`` passes and none), at the compiled batch and at a smaller one, and
returns the disagreements. A long campaign:

    python tests/differential.py --graphs 5000 [--start 0] [--jobs 2]
"""

from __future__ import annotations

import ast
import itertools
import math
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import yaml

# -- the oracle ---------------------------------------------------------------------------


class Domain(Exception):
    """The values come too close to a kink, a pole or the edge of a domain."""


class Dropped(Exception):
    """The generator cannot make this candidate; it tries another."""


MARGIN = 1e-2  # distance kept from kinks, poles, ties and domain edges


@dataclass
class Oracle:
    """Evaluates a spec's expressions in float64; checks the margins as it goes."""

    dims: dict
    strict: bool = True  # raise Domain on a violated margin

    def check(self, ok: bool) -> None:
        if self.strict and not ok:
            raise Domain

    def run(self, spec: dict, values: dict) -> dict:
        """Every graph node's value (``values`` holds inputs and params)."""
        env = dict(values)
        pending = dict(spec.get("graph") or {})
        while pending:  # entries may come in any order
            for name, text in list(pending.items()):
                tree = ast.parse(str(text), mode="eval").body
                called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}  # an op, even where a node shares its name
                if all(n.id in env or n.id in self.dims or id(n) in called
                       for n in ast.walk(tree) if isinstance(n, ast.Name)):
                    env[name] = self.eval(tree, env)
                    del pending[name]
        return env

    def eval(self, node: ast.AST, env: dict):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            return float(self.dims[node.id])
        if isinstance(node, ast.UnaryOp):
            value = self.eval(node.operand, env)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left, env), self.eval(node.right, env)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                self.check(np.all(np.abs(right) > MARGIN))
                return left / right
            if isinstance(node.op, ast.MatMult):
                return np.matmul(left, right)
            if isinstance(node.op, ast.Pow):
                p = float(right)
                if p != int(p):
                    self.check(np.all(np.asarray(left) > MARGIN))
                elif p < 0:
                    self.check(np.all(np.abs(left) > MARGIN))
                return np.power(np.asarray(left, dtype=np.float64), p)
        if isinstance(node, ast.Call):
            name = node.func.id
            args = [a for a in node.args if not self.is_attr(a)]
            positional = [self.literal(a) for a in node.args if self.is_attr(a)]
            keywords = {k.arg: self.literal(k.value) for k in node.keywords}
            tensors = [np.asarray(self.eval(a, env), dtype=None) for a in args]
            return OPS[name](self, *tensors, *positional, **keywords)
        raise ValueError(f"the oracle cannot read {ast.dump(node)}")

    def is_attr(self, node: ast.AST) -> bool:
        if isinstance(node, ast.UnaryOp):
            return self.is_attr(node.operand)
        if isinstance(node, ast.Name):
            return node.id in self.dims
        return isinstance(node, (ast.Constant, ast.List, ast.Tuple))

    def literal(self, node: ast.AST):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp):
            return -self.literal(node.operand)
        if isinstance(node, ast.Name):
            return self.dims[node.id]
        return [self.literal(e) for e in node.elts]

    # -- ops, from their documented meaning -----------------------------------------------
    def kink(self, x) -> None:
        self.check(np.all(np.abs(x) > MARGIN))

    def gap(self, x, axis) -> None:
        """The largest element along ``axis`` stands clear of the second largest."""
        if x.shape[axis] > 1:
            top = np.sort(np.moveaxis(x, axis, -1), axis=-1)
            self.check(np.all(top[..., -1] - top[..., -2] > MARGIN))


def _exp(o, x):
    o.check(np.all(x < 30))
    return np.exp(x)


def _log(o, x):
    o.check(np.all(x > MARGIN))
    return np.log(x)


def _sqrt(o, x):
    o.check(np.all(x > MARGIN))
    return np.sqrt(x)


def _abs(o, x):
    o.kink(x)
    return np.abs(x)


def _relu(o, x):
    o.kink(x)
    return np.maximum(x, 0.0)


def _step(o, x):
    o.kink(x)
    return (x > 0).astype(np.float64)


def _sign(o, x):
    o.kink(x)
    return np.sign(x)


def _sigmoid(o, x):
    return 1.0 / (1.0 + np.exp(-x))


def _axes(axis, rank):
    if axis is None:
        return None
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _sum(o, x, axis=None, keepdims=False):
    return np.sum(x, axis=_axes(axis, x.ndim), keepdims=keepdims)


def _mean(o, x, axis=None, keepdims=False):
    return np.mean(x, axis=_axes(axis, x.ndim), keepdims=keepdims)


def _max(o, x, axis, keepdims=False):
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    moved = np.moveaxis(x, axes, range(-len(axes), 0))
    o.gap(moved.reshape(moved.shape[: moved.ndim - len(axes)] + (-1,)), -1)
    return np.max(x, axis=axes, keepdims=keepdims)


def _transpose(o, x, axes=None):
    return np.transpose(x, axes)


def _reshape(o, x, shape):
    return np.reshape(x, [int(d) for d in shape])


def _flatten(o, x):
    return x if x.ndim < 2 else x.reshape(x.shape[0], -1)


def _concat(o, *args, axis):
    return np.concatenate(args, axis=axis)


def _embedding(o, table, ids):
    return table[ids]


def _windows(x, size, stride, padding=0):
    """[b, t, size, c]: the windows over axis 1 of a padded [b, seq, c]."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    steps = (x.shape[1] - size) // stride + 1
    return np.stack([x[:, t * stride : t * stride + size, :] for t in range(steps)], axis=1)


def _conv1d(o, x, kernel, stride=1, padding=0):
    windows = _windows(x, kernel.shape[0], stride, padding)
    return np.einsum("btwc,wco->bto", windows, kernel)


def _max_pool1d(o, x, size, stride=None):
    windows = _windows(x, size, stride or size)
    o.gap(windows, 2)
    return windows.max(axis=2)


def _avg_pool1d(o, x, size, stride=None):
    return _windows(x, size, stride or size).mean(axis=2)


def _image_windows(x, size_h, size_w, stride, padding=0):
    """[b, i, j, size_h, size_w, c]: the windows over axes 1 and 2 of a padded [b, h, w, c]."""
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h, out_w = (x.shape[1] - size_h) // stride + 1, (x.shape[2] - size_w) // stride + 1
    rows = [[x[:, i * stride : i * stride + size_h, j * stride : j * stride + size_w, :] for j in range(out_w)] for i in range(out_h)]
    return np.stack([np.stack(row, axis=1) for row in rows], axis=1)


def _conv2d(o, x, kernel, stride=1, padding=0):
    return np.einsum("bijuvc,uvco->bijo", _image_windows(x, kernel.shape[0], kernel.shape[1], stride, padding), kernel)


def _max_pool2d(o, x, size, stride=None):
    windows = _image_windows(x, size, size, stride or size)
    flat = windows.reshape(windows.shape[:3] + (size * size, windows.shape[-1]))
    o.gap(flat, 3)
    return flat.max(axis=3)


def _avg_pool2d(o, x, size, stride=None):
    return _image_windows(x, size, size, stride or size).mean(axis=(3, 4))


def _upsample2d(o, x, factor):
    return x.repeat(factor, axis=1).repeat(factor, axis=2)


def _layer_norm(o, x, axis=-1, eps=1e-5):
    centered = x - x.mean(axis=axis, keepdims=True)
    return centered / np.sqrt((centered**2).mean(axis=axis, keepdims=True) + eps)


def _leaky_relu(o, x, slope=0.01):
    o.kink(x)
    return np.where(x > 0, x, slope * x)


def _elu(o, x, alpha=1.0):
    o.kink(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_ERF = np.vectorize(math.erf, otypes=[float])


def _dropout(o, x, p):
    return x  # evaluation mode, and loss_and_grads without training


def _softmax(o, x, axis=-1):
    if x.ndim == 0:
        return np.ones_like(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(o, x, axis=-1):
    if x.ndim == 0:
        return np.zeros_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _cross_entropy(o, logits, labels):
    picked = np.take_along_axis(logits, labels[..., None].astype(np.int64), axis=-1)[..., 0]
    top = logits.max(axis=-1)
    lse = top + np.log(np.exp(logits - top[..., None]).sum(axis=-1))
    return np.mean(lse - picked)


def _binary_cross_entropy(o, z, y):
    return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))


def _mse(o, pred, target):
    return np.mean((pred - target) ** 2)


OPS = {
    "exp": _exp, "log": _log, "sqrt": _sqrt, "abs": _abs, "relu": _relu, "step": _step,
    "sign": _sign, "sigmoid": _sigmoid, "tanh": lambda o, x: np.tanh(x), "neg": lambda o, x: -x,
    "add": lambda o, a, b: a + b, "sub": lambda o, a, b: a - b, "mul": lambda o, a, b: a * b,
    "div": lambda o, a, b: a / b, "pow": lambda o, x, p: np.power(x, float(p)),
    "matmul": lambda o, a, b: np.matmul(a, b),
    "sum": _sum, "mean": _mean, "max": _max, "transpose": _transpose, "reshape": _reshape,
    "flatten": _flatten, "concat": _concat, "embedding": _embedding, "conv1d": _conv1d,
    "max_pool1d": _max_pool1d, "avg_pool1d": _avg_pool1d, "dropout": _dropout,
    "softmax": _softmax, "log_softmax": _log_softmax, "cross_entropy": _cross_entropy,
    "binary_cross_entropy": _binary_cross_entropy, "mse": _mse,
    "conv2d": _conv2d, "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d, "upsample2d": _upsample2d, "layer_norm": _layer_norm,
    "leaky_relu": _leaky_relu, "elu": _elu, "erf": lambda o, x: _ERF(x), "softplus": lambda o, x: np.logaddexp(x, 0),
    "silu": lambda o, x: x * _sigmoid(o, x), "gelu": lambda o, x: x * (1 + _ERF(x / math.sqrt(2))) / 2,
    "gelu_tanh": lambda o, x: x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))) / 2,
}


# -- the generator ------------------------------------------------------------------------
NAMES = ["h", "z", "a", "out", "hidden", "score", "feat", "u", "v", "act", "y_hat", "pred",
         "h_1", "hid", "q", "k", "gate", "t", "s", "e", "p", "r", "m1", "layer", "o", "net_out",
         "model_h", "emb", "conv", "pool", "res", "acc", "tmp", "val", "norm", "c2"]
# names that the generated code or C once kept for themselves: generated code mangles them
TAKEN_WORDS = ["n", "ids", "mask", "int", "max", "sum", "step", "state", "data", "input", "double", "main", "lr",
               "seed", "params", "exp", "tanh", "float", "len", "arena", "real", "i", "j", "scratch", "DTYPE", "NULL",
               "true", "sg_h", "grads", "loss_value", "np", "correct", "error_sum", "_X", "inputs", "outputs"]


@dataclass
class Term:
    text: str  # an expression, parenthesised where it is not atomic
    shape: tuple  # dim names (str) or ints
    named: bool = False


@dataclass
class Case:
    seed: int
    spec: dict
    values: dict  # inputs and params
    text: str = ""

    @property
    def batch(self) -> int:
        return (self.spec.get("dims") or {}).get("batch", 1)


@dataclass
class Generator:
    rng: random.Random
    dims: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    graph: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)  # oracle values of graph entries
    names: list = field(default_factory=list)
    vrng: np.random.Generator = None

    # -- sizes and leaves -------------------------------------------------------------
    def size(self, d) -> int:
        return d if isinstance(d, int) else self.dims[d]

    def sizes(self, shape) -> tuple:
        return tuple(self.size(d) for d in shape)

    def fresh(self, stem: str) -> str:
        if self.rng.random() < 0.15:
            stem = self.rng.choice(TAKEN_WORDS)
        taken = set(self.dims) | set(self.inputs) | set(self.params) | set(self.graph)
        for k in itertools.count():
            name = stem if k == 0 else f"{stem}{k + 1}"
            if name not in taken:
                return name
        raise AssertionError

    def shape_text(self, shape) -> list:
        return [d for d in shape]

    def param(self, shape, positive: bool = False, stem: str = "W") -> Term:
        if "batch" in shape:  # only inputs have the batch axis
            raise Dropped
        name = self.fresh(stem)
        self.params[name] = {"shape": self.shape_text(shape)}
        sizes = self.sizes(shape)
        if positive:
            value = self.vrng.uniform(0.5, 2.0, sizes)
        else:
            value = self.vrng.standard_normal(sizes)
        self.values[name] = np.asarray(value, dtype=np.float64)
        return Term(name, tuple(shape), True)

    def input(self, shape, dtype="float", bound: int = 0, stem: str = "x") -> Term:
        name = self.fresh(stem)
        entry = {"shape": self.shape_text(shape)}
        sizes = self.sizes(shape)
        if dtype == "int":
            entry["dtype"] = "int"
            self.values[name] = self.vrng.integers(0, bound, sizes).astype(np.int64)
        else:
            self.values[name] = self.vrng.standard_normal(sizes)
        self.inputs[name] = entry
        return Term(name, tuple(shape), True)

    def leaf(self, shape, stem: str, positive: bool = False) -> Term | None:
        """A leaf of ``shape``: an input where it has the batch axis (first, as data come
        in rows), else a param; None where the batch axis is elsewhere."""
        shape = tuple(shape)
        if "batch" in shape[1:]:
            return None
        if shape and shape[0] == "batch":
            return self.input(shape, stem=stem)
        return self.param(shape, positive=positive, stem=stem)

    # -- evaluating candidates ----------------------------------------------------------
    def value(self, text: str):
        """The oracle's value of an expression, or None where it leaves the margins."""
        o = Oracle(self.dims)
        env = {**self.values, **self.env}
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(o.eval(ast.parse(text, mode="eval").body, env))
        except (Domain, ValueError, IndexError):  # outside the margins, or shapes this generator got wrong
            return None
        if not np.all(np.isfinite(out)) or np.max(np.abs(out), initial=0.0) > 1e4:
            return None
        return out

    def accept(self, text: str, shape: tuple) -> Term | None:
        value = self.value(text)
        if value is None:
            return None
        if value.shape != self.sizes(shape):  # the generator's own shape rule was wrong: drop it
            return None
        if self.rng.random() < 0.45:  # a named graph entry, as users write them
            name = self.fresh(self.rng.choice(NAMES))
            self.graph[name] = text
            self.env[name] = value
            return Term(name, tuple(shape), True)
        return Term(text if is_atom(text) else f"({text})", tuple(shape))

    # -- ops ----------------------------------------------------------------------------
    def pick(self, terms, rank_at_least: int = 0, rank: int | None = None):
        pool = [t for t in terms if len(t.shape) >= rank_at_least and (rank is None or len(t.shape) == rank)]
        return self.rng.choice(pool) if pool else None

    def broadcast_partner(self, terms, t: Term) -> Term:
        """A term whose shape broadcasts with t's: an existing one, a new param, or a scalar."""
        fits = [u for u in terms if broadcasts(self.sizes(u.shape), self.sizes(t.shape))]
        roll = self.rng.random()
        if fits and roll < 0.5:
            return self.rng.choice(fits)
        if roll < 0.65:
            return Term(number(self.rng), ())
        shape = list(t.shape)
        k = self.rng.randint(0, len(shape))
        shape = shape[k:]  # a suffix (NumPy's right alignment) ...
        shape = [1 if self.rng.random() < 0.25 else d for d in shape]  # ... with some axes of 1
        return self.leaf(shape, "x" if "batch" in shape else "W", positive=self.rng.random() < 0.3) or Term(number(self.rng), ())

    def step(self, terms: list) -> Term | None:
        kind = self.rng.choice(KINDS)
        try:
            return getattr(self, "make_" + kind)(terms)
        except Dropped:
            return None

    def make_binary(self, terms):
        t = self.pick(terms)
        u = self.broadcast_partner(terms, t)
        op = self.rng.choice(["+", "-", "*", "/"])
        a, b = (t, u) if self.rng.random() < 0.7 else (u, t)
        shape = broadcast_shape(self, a.shape, b.shape)
        return self.accept(f"{a.text} {op} {b.text}", shape)

    def make_unary(self, terms):
        t = self.pick(terms)
        op = self.rng.choice(["exp", "log", "sqrt", "abs", "sigmoid", "tanh", "relu", "sign", "step", "neg"])
        if op == "neg":
            return self.accept(f"-{t.text}", t.shape)
        if op in ("log", "sqrt") and self.rng.random() < 0.6:  # keep the domain more often than not
            inner = self.rng.choice([f"exp({t.text})", f"{t.text} * {t.text} + 1", f"sigmoid({t.text}) + 0.5"])
            return self.accept(f"{op}({inner})", t.shape)
        return self.accept(f"{op}({t.text})", t.shape)

    def make_activation(self, terms):
        t = self.pick(terms)
        op = self.rng.choice(["gelu", "gelu_tanh", "silu", "softplus", "erf", "elu", "leaky_relu", "elu(alpha=0.5)", "leaky_relu(slope=0.2)"])
        attr = f", {op[op.index('(') + 1 : -1]}" if "(" in op else ""
        return self.accept(f"{op.split('(')[0]}({t.text}{attr})", t.shape)

    def make_power(self, terms):
        t = self.pick(terms)
        p = self.rng.choice([2, 3, -1, -2, 0.5, "(1/3)", 1.5, 0, 1, -0.5, 4, "1e300"])
        base = t.text
        if p in (0.5, "(1/3)", 1.5, -0.5) and self.rng.random() < 0.6:
            base = f"({t.text} * {t.text} + 0.5)"
        if p == "1e300":  # a huge exponent on a base of exactly 1
            base = f"({t.text} * 0 + 1)"
        return self.accept(f"{base} ** {p}", t.shape)

    def make_degenerate(self, terms):
        """Expressions that fold to constants: x - x, x / x, x ** 0, exp(x / x)."""
        t = self.pick(terms)
        form = self.rng.choice(["{0} - {0}", "{0} / {0}", "{0} ** 0", "exp({0} / {0})", "{0} * 0 + 2",
                                "exp({0} - {0}) + {0}", "0.5 * {0}"])
        return self.accept(form.format(t.text), t.shape)

    def make_reduce(self, terms):
        t = self.pick(terms, rank_at_least=1)
        if t is None:
            return None
        op = self.rng.choice(["sum", "mean", "max"])
        rank = len(t.shape)
        keep = self.rng.random() < 0.4
        if self.rng.random() < 0.6:
            axis = self.rng.randrange(rank)
            if self.rng.random() < 0.3:
                axis -= rank
            axes = [axis % rank]
            attr = f"axis={axis}"
        elif self.rng.random() < 0.5 and rank >= 2:
            axes = sorted(self.rng.sample(range(rank), self.rng.randint(1, rank)))
            attr = f"axis={axes}"
        elif op == "max":  # max names its axes
            axes = list(range(rank))
            attr = f"axis={axes}"
        else:
            axes = list(range(rank))
            attr = ""
        if keep:
            attr = (attr + ", " if attr else "") + "keepdims=True"
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape)) if keep else tuple(
            d for i, d in enumerate(t.shape) if i not in axes)
        sep = ", " if attr else ""
        return self.accept(f"{op}({t.text}{sep}{attr})", shape)

    def make_matmul(self, terms):
        t = self.pick(terms, rank_at_least=1)
        if t is None:
            return None
        if len(t.shape) == 1 or self.rng.random() < 0.2:  # numpy.matmul's vectors
            k = t.shape[-1]
            if len(t.shape) == 1 and self.rng.random() < 0.5:
                other = self.param((k, self.rng.choice([1, 2, "d"])))
                return self.accept(f"{t.text} @ {other.text}", (other.shape[1],))
            other = self.param((k,))
            return self.accept(f"{t.text} @ {other.text}", tuple(t.shape[:-1]))
        k = t.shape[-1]
        m = self.rng.choice([1, 2, 3, "d", "e"])
        if self.rng.random() < 0.3 and len(t.shape) == 3:
            other = self.leaf((t.shape[0], k, m), "x" if t.shape[0] == "batch" else "W")
            if other is None:
                return None
            shape = (t.shape[0], t.shape[1], m)
        else:
            other = self.param((k, m))
            shape = tuple(t.shape[:-1]) + (m,)
        if self.rng.random() < 0.2 and len(t.shape) == 2:  # x.T-style: (W.T @ x.T).T
            return self.accept(f"transpose(transpose({other.text}) @ transpose({t.text}))", shape)
        return self.accept(f"{t.text} @ {other.text}", shape)

    def make_shape(self, terms):
        t = self.pick(terms, rank_at_least=1)
        if t is None:
            return None
        rank = len(t.shape)
        choice = self.rng.choice(["transpose", "reshape", "flatten", "concat"])
        if choice == "transpose":
            axes = list(range(rank))
            self.rng.shuffle(axes)
            if self.rng.random() < 0.3 or rank == 1:
                return self.accept(f"transpose({t.text})", tuple(reversed(t.shape)))
            return self.accept(f"transpose({t.text}, axes={axes})", tuple(t.shape[a] for a in axes))
        if choice == "flatten":
            if rank < 2:
                return self.accept(f"flatten({t.text})", t.shape)
            rest = math.prod(self.size(d) for d in t.shape[1:])
            return self.accept(f"flatten({t.text})", (t.shape[0], rest))
        if choice == "reshape":
            sizes = self.sizes(t.shape)
            total = math.prod(sizes)
            if t.shape and t.shape[0] == "batch" and self.rng.random() < 0.6:
                rest = total // self.dims["batch"]
                form = self.rng.choice([["batch", -1], [-1, rest], ["batch", rest, 1]])
                shape = tuple("batch" if d in ("batch", -1) and (d == "batch" or form[0] == -1) else d for d in form)
                shape = tuple(rest if d == -1 else d for d in shape)
                return self.accept(f"reshape({t.text}, {form})".replace("'", ""), shape)
            return self.accept(f"reshape({t.text}, [-1])", (total,))
        axis = self.rng.randrange(rank)
        other_shape = list(t.shape)
        if other_shape[axis] == "batch":
            other = t
        else:
            other_shape[axis] = self.rng.choice([1, 2])
            other = self.leaf(other_shape, "W")
            if other is None:
                return None
        width = self.size(t.shape[axis]) + self.size(other.shape[axis])
        shape = list(t.shape)
        shape[axis] = width
        return self.accept(f"concat({t.text}, {other.text}, axis={axis - rank if self.rng.random() < 0.3 else axis})", tuple(shape))

    def make_sequence(self, terms):
        """conv1d, pooling, embedding: over a [batch, seq, channels] term."""
        t = self.pick(terms, rank=3)
        if t is None or self.rng.random() < 0.3:
            t = self.sequence()
        seq, ch = self.size(t.shape[1]), t.shape[2]
        op = self.rng.choice(["conv1d", "max_pool1d", "avg_pool1d"])
        if op == "conv1d":
            width = self.rng.randint(1, min(3, seq))
            stride = self.rng.randint(1, 2)
            padding = self.rng.randint(0, 1)
            kernel = self.param((width, ch, self.rng.choice([2, 3])), stem="K")
            steps = (seq + 2 * padding - width) // stride + 1
            attrs = "" if stride == 1 and padding == 0 else f", stride={stride}, padding={padding}"
            return self.accept(f"conv1d({t.text}, {kernel.text}{attrs})", (t.shape[0], steps, kernel.shape[2]))
        size = self.rng.randint(1, min(3, seq))
        stride = self.rng.choice([None, 1, 2])
        steps = (seq - size) // (stride or size) + 1
        attrs = f"{size}" if stride is None else f"{size}, stride={stride}"
        return self.accept(f"{op}({t.text}, {attrs})", (t.shape[0], steps, ch))

    def make_image(self, terms):
        """conv2d, the 2-D pools or upsampling over a [batch, h, w, channels] term, made from a rank-4 input where there is none."""
        t = self.pick(terms, rank=4)
        if t is None or self.rng.random() < 0.4:
            t = self.input(("batch", self.rng.choice([3, 4, "T"]), self.rng.choice([2, 3, "T"]), self.rng.choice([1, 2, "e"])), stem="img")
        h, w, ch = self.size(t.shape[1]), self.size(t.shape[2]), t.shape[3]
        op = self.rng.choice(["conv2d", "conv2d", "max_pool2d", "avg_pool2d", "upsample2d"])
        if op == "conv2d":
            kh, kw = self.rng.randint(1, min(3, h)), self.rng.randint(1, min(3, w))
            stride, padding = self.rng.randint(1, 2), self.rng.randint(0, 2)
            kernel = self.param((kh, kw, ch, self.rng.choice([1, 2, 3])), stem="K")
            out = ((h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1)
            attrs = "" if stride == 1 and padding == 0 else f", stride={stride}, padding={padding}"
            return self.accept(f"conv2d({t.text}, {kernel.text}{attrs})", (t.shape[0], *out, kernel.shape[3]))
        if op == "upsample2d":
            factor = self.rng.randint(1, 3)
            return self.accept(f"upsample2d({t.text}, {factor})", (t.shape[0], h * factor, w * factor, ch))
        size = self.rng.randint(1, min(2, h, w))
        stride = self.rng.choice([None, 1, 2])
        out = ((h - size) // (stride or size) + 1, (w - size) // (stride or size) + 1)
        attrs = f"{size}" if stride is None else f"{size}, stride={stride}"
        return self.accept(f"{op}({t.text}, {attrs})", (t.shape[0], *out, ch))

    def make_norm(self, terms):
        t = self.pick(terms, rank_at_least=1)
        if t is None:
            return None
        axis = self.rng.randrange(-len(t.shape), len(t.shape))
        attrs = "" if axis == -1 and self.rng.random() < 0.5 else f", axis={axis}"
        if self.rng.random() < 0.3:
            attrs += f", eps={self.rng.choice([0.1, 1e-3])}"
        return self.accept(f"layer_norm({t.text}{attrs})", t.shape)

    def sequence(self) -> Term:
        """A [batch, seq, channels] term: an embedding of ids, or a float input."""
        if self.rng.random() < 0.6:
            vocab = self.rng.randint(3, 7)
            table = self.param((vocab, "e"), stem="E")
            ids = self.input(("batch", "T"), "int", bound=vocab, stem="tokens")
            return self.accept(f"embedding({table.text}, {ids.text})", ("batch", "T", "e")) or table
        return self.input(("batch", "T", "e"), stem="seq")

    def make_embedding(self, terms):
        vocab = self.rng.randint(2, 6)
        table = self.param((vocab, self.rng.choice(["d", 1, 3])), stem="E")
        shape = self.rng.choice([("batch",), ("batch", "T"), ("batch", 1)])
        ids = self.input(shape, "int", bound=vocab, stem="tokens")
        return self.accept(f"embedding({table.text}, {ids.text})", shape + (table.shape[1],))

    def make_softmax(self, terms):
        t = self.pick(terms)
        op = self.rng.choice(["softmax", "log_softmax"])
        if not t.shape:
            return self.accept(f"{op}({t.text})", ())
        axis = self.rng.randrange(-len(t.shape), len(t.shape))
        attr = "" if axis == -1 and self.rng.random() < 0.5 else f", axis={axis}"
        return self.accept(f"{op}({t.text}{attr})", t.shape)

    def make_dropout(self, terms):
        t = self.pick(terms)
        return self.accept(f"dropout({t.text}, {self.rng.choice([0.0, 0.25, 0.5])})", t.shape)

    # -- losses ---------------------------------------------------------------------------
    def loss_term(self, terms) -> str | None:
        kind = self.rng.choice(["sum", "sum", "weighted", "mean", "ce", "bce", "mse"])
        t = self.pick(terms)
        if kind == "sum":
            return f"sum({t.text})"
        if kind == "mean":
            return f"mean({t.text})"
        if kind == "weighted":
            w = self.leaf(t.shape, "w")
            return f"sum({t.text} * {w.text})" if w else f"sum({t.text})"
        if kind == "mse":
            target = self.leaf(t.shape, "target")
            return f"mse({t.text}, {target.text})" if target else f"mean({t.text})"
        if kind == "bce":
            if not t.shape or t.shape[0] != "batch" or "batch" in t.shape[1:]:
                return f"sum({t.text})"
            if self.rng.random() < 0.5:
                y = self.input(t.shape, "int", bound=2, stem="labels")
            else:
                y = self.input(t.shape, stem="targets")
                self.values[y.text] = self.vrng.uniform(0, 1, self.sizes(t.shape))
            return f"binary_cross_entropy({t.text}, {y.text})"
        t = self.pick(terms, rank_at_least=1)
        if t is None or t.shape[0] != "batch" or "batch" in t.shape[1:] or self.size(t.shape[-1]) < 2:
            return f"sum({t.text if t else terms[0].text})"
        y = self.input(t.shape[:-1], "int", bound=self.size(t.shape[-1]), stem="y")
        return f"cross_entropy({t.text}, {y.text})"


KINDS = ["binary", "binary", "binary", "unary", "unary", "power", "degenerate", "reduce", "reduce",
         "matmul", "matmul", "shape", "shape", "sequence", "embedding", "softmax", "dropout", "image", "norm", "activation"]


def is_atom(text: str) -> bool:
    return text.replace("_", "a").isalnum() or (text.endswith(")") and text.split("(", 1)[0].isidentifier()
                                                and balanced_call(text))


def balanced_call(text: str) -> bool:
    """``f(...)`` whose first parenthesis closes at the end."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False


def number(rng: random.Random) -> str:
    return rng.choice(["2", "0.5", "3", "-1.5", "1", "0.1", "10", "1e-3"])


def broadcasts(a: tuple, b: tuple) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(a), reversed(b)))


def broadcast_shape(gen: Generator, a: tuple, b: tuple) -> tuple:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x == "batch" or y == "batch":
            out.append("batch")
        elif gen.size(x) == 1:
            out.append(y)
        else:
            out.append(x)
    return tuple(out)


def generate(seed: int) -> Case:
    rng = random.Random(seed)
    gen = Generator(rng)
    gen.vrng = np.random.default_rng(seed)
    gen.dims = {"batch": rng.randint(2, 4), "d": rng.randint(1, 4), "e": rng.randint(2, 3), "T": rng.randint(3, 5)}
    terms = [gen.input(("batch", "d")), gen.param(("d",), positive=rng.random() < 0.5)]
    if rng.random() < 0.5:
        terms.append(gen.param((), positive=True, stem="c"))
    for _ in range(rng.randint(2, 9)):
        made = None
        for _attempt in range(6):
            made = gen.step(terms)
            if made is not None:
                break
        if made is not None:
            terms.append(made)
    parts = []
    for _ in range(rng.randint(1, 3)):
        part = gen.loss_term(terms[2:] or terms)
        if part is not None:
            parts.append(part)
    loss_text = " + ".join(parts)
    # the loss must stay inside the margins too
    value = gen.value(loss_text)
    if value is None:
        loss_text = f"sum({terms[-1].text} * 0) + sum({terms[0].text})"
    loss_name = gen.fresh(rng.choice(["loss", "L", "objective", "cost"]))
    gen.graph[loss_name] = loss_text
    outputs = [t.text for t in terms if t.named and t.text in gen.graph and rng.random() < 0.4]
    spec = {"name": rng.choice(["model", "net", "h", "mlp", "tiny"]), "dims": gen.dims,
            "inputs": gen.inputs, "params": gen.params, "graph": gen.graph, "loss": loss_name}
    if outputs:
        spec["outputs"] = outputs
    entries = list(spec["graph"].items())
    if rng.random() < 0.3:  # entries may come in any order
        rng.shuffle(entries)
        spec["graph"] = dict(entries)
    return Case(seed, spec, gen.values, yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=200))


# -- running a case -----------------------------------------------------------------------
H = 1e-4  # step of the five-point central difference (error O(h**4))


def oracle_loss(case: Case, values: dict, dims: dict) -> tuple[float, dict]:
    o = Oracle(dims)
    with np.errstate(all="ignore"):
        env = o.run(case.spec, values)
    return float(env[case.spec["loss"]]), env


def numeric_derivative(case: Case, values: dict, dims: dict, name: str, direction: np.ndarray) -> float:
    def at(t):
        shifted = dict(values, **{name: values[name] + t * direction})
        return oracle_loss(case, shifted, dims)[0]

    return (-at(2 * H) + 8 * at(H) - 8 * at(-H) + at(-2 * H)) / (12 * H)


def at_batch(case: Case, rows: int) -> tuple[dict, dict]:
    """The case's values with every batch-led input cut to ``rows`` rows."""
    values = dict(case.values)
    for name, entry in case.spec["inputs"].items():
        if entry["shape"] and entry["shape"][0] == "batch":
            values[name] = case.values[name][:rows]
    return values, dict(case.spec["dims"], batch=rows)


@dataclass
class Finding:
    seed: int
    where: str
    what: str

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.where}: {self.what}"


def close(actual, expected, rtol: float, atol: float) -> bool:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return False
    if not (np.all(np.isfinite(actual)) and np.all(np.isfinite(expected))):  # NaN and inf must match exactly
        return bool(np.array_equal(actual, expected, equal_nan=True))
    return bool(np.all(np.abs(actual - expected) <= atol + rtol * np.abs(expected)))


def case_of(text: str, seed: int = 0) -> Case:
    """A case from a written spec: inputs standard normal (ids in range, 0/1
    labels), params uniform on [0.5, 2] (inside every op's domain)."""
    spec = yaml.safe_load(text)
    rng = np.random.default_rng(seed)
    dims = spec.get("dims") or {}
    values = {}
    for kind in ("inputs", "params"):
        for name, entry in (spec.get(kind) or {}).items():
            shape = tuple(dims[d] if isinstance(d, str) else d for d in entry["shape"])
            if entry.get("dtype") == "int":
                values[name] = rng.integers(0, entry.get("bound", 2), shape).astype(np.int64)
            elif kind == "params":
                values[name] = rng.uniform(0.5, 2.0, shape)
            else:
                values[name] = rng.standard_normal(shape)
    for entry in (spec.get("inputs") or {}).values():
        entry.pop("bound", None)
    return Case(seed, spec, values, yaml.safe_dump(spec, sort_keys=False))


def run_case(seed: int, targets=("numpy", "c")) -> list[Finding]:
    """Every disagreement of symgraph with the oracle (and of the builds with each other) on one generated case."""
    return check(generate(seed), targets)


def check(case: Case, targets=("numpy", "c")) -> list[Finding]:
    """Every disagreement of symgraph with the oracle (and of the builds with each other) on one case."""
    import symgraph as sg
    from symgraph.errors import SpecError
    from symgraph.passes import CODEGEN

    seed = case.seed
    findings = []
    try:
        g = sg.load(case.text)
    except SpecError as exc:
        return [Finding(seed, "load", f"refused a valid spec: {exc}")]
    except Exception as exc:  # noqa: BLE001 - any escape is a finding
        return [Finding(seed, "load", f"{type(exc).__name__}: {exc}")]
    from symgraph.codegen import numpy as numpy_backend

    builds = {}
    for target in targets:
        # NumPy also with every array it can in scratch buffers, which the memory plan shares by lifetime
        pipelines = (("codegen", None), ("none", [])) + ((("scratch", None),) if target == "numpy" else ())
        for pipeline, passes in pipelines:
            where = f"{target}/{pipeline}"
            saved = numpy_backend.SCRATCH_ELEMENTS
            numpy_backend.SCRATCH_ELEMENTS = 0 if pipeline == "scratch" else saved
            try:
                builds[where] = sg.compile(g, target=target, dtype="float64", passes=passes if passes is not None else CODEGEN)
            except Exception as exc:  # noqa: BLE001
                findings.append(Finding(seed, where, f"compile: {type(exc).__name__}: {exc}"))
            finally:
                numpy_backend.SCRATCH_ELEMENTS = saved
    batch = case.batch
    rng = np.random.default_rng(seed)
    param_names = list(case.spec["params"])
    for rows in sorted({batch, max(1, batch - 1 - seed % 2)}, reverse=True):
        values, dims = at_batch(case, rows)
        try:
            with np.errstate(all="ignore"):
                Oracle(dims).run(case.spec, values)
        except Domain:
            continue  # this batch leaves the margins (a reduction over the batch moved)
        except (ValueError, IndexError):
            # shapes that hold only at the compiled batch (a param as long as the batch):
            # every build must refuse the short batch
            for where, model in builds.items():
                try:
                    model.loss_and_grads({p: values[p] for p in param_names}, {k: values[k] for k in case.spec["inputs"]})
                except ValueError:
                    continue
                except Exception as exc:  # noqa: BLE001
                    findings.append(Finding(seed, f"{where} batch={rows}", f"a batch its shapes do not fit: {type(exc).__name__}: {exc}"))
                    continue
                findings.append(Finding(seed, f"{where} batch={rows}", "took a batch its shapes do not fit"))
            continue
        expected_loss, env = oracle_loss(case, values, dims)
        if not math.isfinite(expected_loss):
            continue
        directions = {p: unit(rng.standard_normal(values[p].shape)) for p in param_names}
        try:
            numeric = {p: numeric_derivative(case, values, dims, p, directions[p]) for p in param_names}
        except Domain:
            continue
        params = {p: values[p] for p in param_names}
        inputs = {k: values[k] for k in case.spec["inputs"]}
        scale = 1.0 + abs(expected_loss)
        first_grads = None
        for where, model in builds.items():
            here = f"{where} batch={rows}"
            if rows != batch and model.program.merged_batch is not None:
                # the batch axis is folded into another: such a model must refuse a short batch
                try:
                    model.loss_and_grads(params, inputs)
                except ValueError:
                    continue
                findings.append(Finding(seed, here, "a model that folds the batch axis took a short batch"))
                continue
            try:
                loss, grads = model.loss_and_grads(params, inputs)
            except Exception as exc:  # noqa: BLE001
                findings.append(Finding(seed, here, f"loss_and_grads: {type(exc).__name__}: {exc}"))
                continue
            if not close(loss, expected_loss, 1e-9, 1e-12):
                findings.append(Finding(seed, here, f"loss {loss!r}, oracle {expected_loss!r}"))
            for p in param_names:
                if np.shape(grads[p]) != values[p].shape:
                    findings.append(Finding(seed, here, f"gradient of {p} has shape {np.shape(grads[p])}, the param {values[p].shape}"))
                    continue
                analytic = float(np.sum(np.asarray(grads[p]) * directions[p]))
                if abs(analytic - numeric[p]) > 1e-6 * abs(numeric[p]) + 1e-7 * scale:
                    findings.append(Finding(seed, here, f"d{case.spec['loss']}/d{p} along a direction: {analytic!r}, central differences {numeric[p]!r}"))
            if first_grads is None:
                first_grads = (where, grads)
            else:
                for p in param_names:
                    if not close(grads[p], first_grads[1][p], 1e-9, 1e-12 * scale):
                        findings.append(Finding(seed, here, f"gradient of {p} differs from {first_grads[0]}'s"))
            outputs = case.spec.get("outputs", [])
            if outputs:
                try:
                    outs = model.forward(params, inputs)
                except Exception as exc:  # noqa: BLE001
                    findings.append(Finding(seed, here, f"forward: {type(exc).__name__}: {exc}"))
                    continue
                for name in outputs:
                    if np.shape(outs[name]) != np.shape(env[name]):
                        findings.append(Finding(seed, here, f"output {name} has shape {np.shape(outs[name])}, the oracle's {np.shape(env[name])}"))
                    elif not close(outs[name], env[name], 1e-9, 1e-12):
                        findings.append(Finding(seed, here, f"output {name} differs from the oracle"))
        if rows == batch:
            findings += share_findings(case, builds, params, inputs)
    return findings


def share_findings(case: Case, builds: dict, params: dict, inputs: dict) -> list[Finding]:
    """Where symgraph judges the loss to split over examples (so data-parallel
    training takes the model), two shares of the batch, weighted by their
    sizes, must give the batch's loss and gradients."""
    shapes = {name: entry["shape"] for name, entry in case.spec["inputs"].items()}
    batched = [name for name, shape in shapes.items() if shape[:1] == ["batch"]]
    if not batched or any("batch" in shape[1:] for shape in shapes.values()) or len(inputs[batched[0]]) < 2:
        return []
    count = len(inputs[batched[0]])
    cut = 1 + case.seed % (count - 1)
    found = []
    for where, model in builds.items():
        if not where.endswith("/codegen") or model.program.coupling is not None:
            continue
        try:
            whole_loss, whole = model.loss_and_grads(params, inputs)
            summed_loss, summed = 0.0, {p: 0.0 for p in params}
            for first, stop in ((0, cut), (cut, count)):
                share = {k: v[first:stop] if k in batched else v for k, v in inputs.items()}
                loss, grads = model.loss_and_grads(params, share, first=first, total=count)
                summed_loss += loss * (stop - first) / count
                summed = {p: summed[p] + np.asarray(grads[p]) * (stop - first) / count for p in params}
        except Exception as exc:  # noqa: BLE001 - any escape is a finding
            found.append(Finding(case.seed, f"{where} shares", f"{type(exc).__name__}: {exc}"))
            continue
        scale = 1.0 + abs(whole_loss)
        if not math.isfinite(whole_loss):
            continue
        if not close(summed_loss, whole_loss, 1e-9, 1e-12 * scale) or any(
                not close(summed[p], whole[p], 1e-8, 1e-11 * scale) for p in params):
            found.append(Finding(case.seed, f"{where} shares", "judged to split over examples, but shares of the batch "
                                 "do not add up to its loss and gradients"))
    return found


def unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


def checked(seed: int) -> list[Finding]:
    """run_case, with a failure of the fuzzer itself reported as a finding."""
    try:
        return run_case(seed)
    except Exception as exc:  # noqa: BLE001
        return [Finding(seed, "fuzzer", f"{type(exc).__name__}: {exc}")]


def main(argv: list[str]) -> int:
    import argparse
    import os
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=int, default=500)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--show", type=int, help="print one seed's spec and exit")
    args = parser.parse_args(argv)
    if args.show is not None:
        print(generate(args.show).text)
        return 0
    os.environ.setdefault("SYMGRAPH_CACHE", tempfile.mkdtemp(prefix="symgraph-diff-"))
    seeds = range(args.start, args.start + args.graphs)
    failed = 0
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            results = pool.imap_unordered(checked, seeds, chunksize=4)
            for findings in results:
                failed += bool(findings)
                for f in findings:
                    print(f, flush=True)
    else:
        for seed in seeds:
            findings = checked(seed)
            failed += bool(findings)
            for f in findings:
                print(f, flush=True)
    print(f"{args.graphs} graphs (seeds {args.start}..{args.start + args.graphs - 1}): {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
