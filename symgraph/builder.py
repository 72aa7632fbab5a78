"""The Python builder: ``sg.Graph``, ``g.input``, ``g.param``, operators, ``sg.relu``.

The YAML loader drives this same builder, so a spec and the same model built
in Python give identical graphs by construction.
"""

from __future__ import annotations

import math
import inspect
from collections import deque
from typing import Any, Iterable

from . import ops
from .errors import SpecError
from .init import parse_init
from .ir import Graph as IRGraph
from .ir import is_batch
from .metrics import METRICS, known
from .names import check_name

TRAIN_KEYS = {
    "optimizer": str, "lr": float, "momentum": float, "nesterov": bool, "beta1": float, "beta2": float,
    "eps": float, "weight_decay": float, "batch_size": int, "epochs": int, "seed": int,
    "normalize": list, "metric": (str, list), "schedule": str, "warmup": int, "decay": float, "step_epochs": int,
    "clip_norm": float, "patience": int,
}
# What a trainer does where the spec's train: says nothing (batch_size: dims.batch; metric: from the loss).
TRAIN_DEFAULTS = {
    "optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "nesterov": False, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
    "weight_decay": 0.0, "epochs": 10, "seed": 0, "normalize": [], "schedule": "constant", "warmup": 0,
    "decay": 0.1, "step_epochs": 10, "clip_norm": 0.0, "patience": 0,
}
SCHEDULES = ("constant", "step", "exponential", "cosine")  # the learning rate per epoch, after any warm-up
INT_LIMITS = {"seed": 2**63 - 1}  # what both trainers' integer types hold (else 2**31 - 1)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


class Tensor:
    """A handle on one graph node that supports ``+ - * / ** @`` and unary ``-``."""

    __slots__ = ("graph", "_node")

    def __init__(self, graph: "Graph", node: str):
        self.graph = graph
        self._node = node

    @property
    def node(self) -> str:
        """The name of the graph node this tensor stands for."""
        return self.graph._resolve(self._node)

    @property
    def shape(self) -> tuple:
        """Its shape: sizes, the batch axis as the spec's batch size."""
        return self.graph.shape(self.node)

    @property
    def dtype(self) -> str:
        """``"float"``, or ``"int"`` for ids and labels."""
        return self.graph.dtype(self.node)

    def _binary(self, name: str, other: Any, reverse: bool = False) -> "Tensor":
        args = [other, self] if reverse else [self, other]
        return self.graph.apply(name, *args)

    def __add__(self, other): return self._binary("add", other)
    def __radd__(self, other): return self._binary("add", other, reverse=True)
    def __sub__(self, other): return self._binary("sub", other)
    def __rsub__(self, other): return self._binary("sub", other, reverse=True)
    def __mul__(self, other): return self._binary("mul", other)
    def __rmul__(self, other): return self._binary("mul", other, reverse=True)
    def __truediv__(self, other): return self._binary("div", other)
    def __rtruediv__(self, other): return self._binary("div", other, reverse=True)
    def __matmul__(self, other): return self._binary("matmul", other)
    def __rmatmul__(self, other): return self._binary("matmul", other, reverse=True)
    def __neg__(self): return self.graph.apply("neg", self)
    def __pos__(self): return self

    def __pow__(self, exponent):
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise SpecError("the exponent of ** must be a constant number")
        return self.graph.apply("pow", self, p=float(exponent))

    @property
    def T(self) -> "Tensor":  # noqa: N802 - NumPy's name
        """The axes reversed, as NumPy's ``.T``."""
        return self.graph.apply("transpose", self)

    def __repr__(self) -> str:
        return f"Tensor({self.node}, shape={tuple(int(d) for d in self.shape)}, {self.dtype})"


class Graph(IRGraph):
    """A computation graph built from Python (or loaded from YAML by ``sg.load``).

    Examples
    --------
    >>> g = sg.Graph("lecture")
    >>> a, b, c = (g.param(k, [], value=v) for k, v in zip("abc", (3, 1, -2)))
    >>> L = g.define("L", c * (a + 2 * b))
    >>> g.set_loss(L)
    """

    def __init__(self, name: str = "model", dims: dict | None = None, source: str | None = None):
        super().__init__(name, dims, source)
        self._alias: dict[str, str] = {}

    def _repr_svg_(self) -> str | None:
        """The drawing, for notebooks; None (the text repr) without Graphviz."""
        from .draw import have_dot, render, to_dot

        return render(to_dot(self), "svg").decode() if have_dot() else None

    # -- leaves -------------------------------------------------------------------
    def resolve_shape(self, shape: Any, node: str) -> tuple:
        """Sizes for a shape written with dim names and numbers (``["batch", 784]``)."""
        if not isinstance(shape, (list, tuple)):
            raise SpecError(f"shape must be a list, got {shape!r}", node=node)
        out = []
        for d in shape:
            if isinstance(d, str):
                if d not in self.dims:
                    raise SpecError(f"unknown dim {d!r} in shape", node=node)
                out.append(self.dims[d])
            elif isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 2**31 - 1:
                out.append(d)
            else:
                raise SpecError(f"shape entries must be positive sizes or dim names, got {d!r}", node=node)
        return tuple(out)

    def _leaf(self, kind: str, name: str, shape: Any, dtype: str, **extra: Any) -> Tensor:
        check_name(name, node=f"{kind}s.{name}" if isinstance(name, str) and name.isidentifier() else f"{kind}s")
        if name in self.dims:
            raise SpecError(f"{name!r} is both a dim and {'an input' if kind == 'input' else 'a param'}: rename one of them", node=name)
        if name in self.nx:
            raise SpecError(f"{name!r} is defined twice", node=name)
        if dtype not in ("float", "int"):
            raise SpecError(f"dtype must be 'float' or 'int', got {dtype!r}", node=name)
        dim_names = tuple(d if isinstance(d, str) else None for d in shape) if isinstance(shape, (list, tuple)) else ()
        shape = self.resolve_shape(shape, name)
        if any(is_batch(d) for d in shape[1:]) or (kind == "param" and shape and is_batch(shape[0])):
            # data arrive in rows: the trainers cut and shuffle every input along its first axis
            where = "an input's first axis" if kind == "input" else "inputs, as their first axis"
            raise SpecError(f"the batch dim can only be {where}", node=name)
        value = extra.get("value")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecError(f"value must be a finite number, got {str(value)[:40]}", node=name)
            if shape != ():
                raise SpecError("only scalars (shape []) may carry a value", node=name)
        attrs = {k: v for k, v in extra.items() if v is not None}
        if any(dim_names):
            attrs["dim_names"] = dim_names  # for shape errors: (batch=16, hid2=16)
        self.add_node(kind, (), (), shape, dtype, name=name, **attrs)
        return Tensor(self, name)

    def input(self, name: str, shape: Iterable = (), dtype: str = "float", value: float | None = None) -> Tensor:
        """Declare data fed at each step (not trained)."""
        return self._leaf("input", name, list(shape), dtype, value=value)

    def param(self, name: str, shape: Iterable = (), init: str | None = None, value: float | None = None) -> Tensor:
        """Declare a trained parameter; ``init`` is a scheme such as ``"he_normal"``."""
        shape = list(shape)
        if init is None:
            if value is not None:
                init = f"constant({float(value)!r})"
            else:
                init = "xavier_uniform" if len(shape) >= 2 else "zeros"
        try:
            parse_init(init)
        except SpecError as exc:
            exc.node = name if isinstance(name, str) and name.isidentifier() else "params"
            raise
        return self._leaf("param", name, shape, "float", init=init, value=value)

    # -- ops ----------------------------------------------------------------------------
    def _lift(self, value: Any) -> str:
        if isinstance(value, Tensor):
            if value.graph is not self:
                raise SpecError("a tensor from another graph was used")
            return value.node
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"cannot use {value!r} in an expression")
        return ops.const(self, value)

    def apply(self, op: str, *args: Any, positional: list | None = None, **attrs: Any) -> Tensor:
        """Apply a registered op: ``g.apply("conv1d", x, K, stride=2)``."""
        nodes = [self._lift(a) for a in args]
        return Tensor(self, ops.apply(self, op, nodes, attrs, positional))

    def const(self, value: float) -> Tensor:
        """A scalar constant (plain numbers in expressions become these)."""
        return Tensor(self, ops.const(self, value))

    def dim(self, name: str) -> Tensor:
        """A dim's size as a scalar (the batch dim is read at run time)."""
        return self.const(self.dims[name])

    # -- naming -------------------------------------------------------------------------
    def _resolve(self, node: str) -> str:
        while node in self._alias:
            node = self._alias[node]
        return node

    def define(self, name: str, value: Tensor | float) -> Tensor:
        """Name a node (``h = g.define("h", sg.relu(x @ W1 + b1))``).

        Unnamed intermediates feeding it become ``h_1``, ``h_2``, ... in the
        order they were built, so generated code reads like the spec.
        """
        check_name(name, node=name if isinstance(name, str) and name.isidentifier() else "graph")
        if name in self.nx or name in self.dims:
            raise SpecError(f"{name!r} is defined twice", node=name)
        node = self._lift(value)
        if not node.startswith("~"):
            # another name for a named node (h: x, or dropout(x, 0.0)): a view of it, so both names exist
            node = ops.apply(self, "reshape", [node], {"shape": tuple(self.shape(node))})
        temps = self._unnamed_ancestors(node)
        mapping = {}
        for temp in temps:
            stem = f"{name}_{len(mapping) + 1}"
            mapping[temp] = self._claim(stem, reserved=name)
        mapping[node] = name
        self.rename(mapping)
        self._alias.update(mapping)
        self.set(name, named=True)
        return Tensor(self, name)

    def _claim(self, stem: str, reserved: str) -> str:
        candidate = self.fresh(stem)
        return self.fresh(candidate + "_") if candidate == reserved else candidate

    def _unnamed_ancestors(self, node: str) -> list[str]:
        seen, queue = set(), deque([node])
        while queue:
            for pred in self.nx.predecessors(queue.popleft()):
                if pred.startswith("~") and pred not in seen:
                    seen.add(pred)
                    queue.append(pred)
        return sorted(seen, key=lambda t: int(t[1:]))

    def set_loss(self, value: Tensor | str) -> None:
        """The scalar to minimise (named ``loss`` if it has no name yet)."""
        node = self._named(value, "loss")
        if self.shape(node) != ():
            raise SpecError(f"the loss must be a scalar, got shape {tuple(int(d) for d in self.shape(node))}", node=node)
        if self.dtype(node) != "float":
            raise SpecError("the loss must be float", node=node)
        self.loss = node

    def add_output(self, value: Tensor | str, name: str | None = None) -> None:
        """Make ``value`` an output (what forward() returns), under ``name`` if it has none yet."""
        node = self._named(value, name or f"output_{len(self.outputs) + 1}")
        if node not in self.outputs:
            self.outputs.append(node)

    def _named(self, value: Tensor | str, default: str) -> str:
        if isinstance(value, str):
            if value not in self.nx:
                raise SpecError(f"unknown name {value!r}", node=value if value.isidentifier() else "<name>")
            return value
        node = self._lift(value)
        return self.define(self.fresh(default), Tensor(self, node)).node if node.startswith("~") else node

    def set_train(self, **settings: Any) -> None:
        """Training settings: optimizer, lr, momentum, batch_size, epochs, seed, ..."""
        for key, value in settings.items():
            kind = TRAIN_KEYS.get(key)
            where = f"train.{key}" if isinstance(key, str) and key.isidentifier() else "train"
            if kind is None:
                raise SpecError(f"unknown train setting {key!r} (known: {', '.join(TRAIN_KEYS)})", node="train")
            if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf):
                raise SpecError(f"{key} must be a finite non-negative number, got {str(value)[:40]}", node=where)
            if kind is int and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT_LIMITS.get(key, 2**31 - 1)):
                raise SpecError(f"{key} must be an integer from 0 to {INT_LIMITS.get(key, 2**31 - 1)}, got {str(value)[:40]}", node=where)
            if kind is bool:  # YAML's true and false reach a spec as names
                value = {True: True, False: False, "true": True, "false": False}.get(value) if isinstance(value, (bool, str)) else None
                if value is None:
                    raise SpecError(f"{key} must be true or false, got {str(settings[key])[:40]}", node=where)
            if key == "schedule" and value not in SCHEDULES:
                raise SpecError(f"schedule must be one of {', '.join(SCHEDULES)}, got {value!r}", node=where)
            if key in ("step_epochs",) and value < 1:
                raise SpecError(f"{key} must be at least 1, got {value}", node=where)
            if key == "batch_size" and value < 1:  # above dims.batch, the trainers refuse it at start
                raise SpecError(f"batch_size must be at least 1, got {value}", node=where)
            if key == "optimizer" and value not in OPTIMIZERS:
                raise SpecError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {value!r}", node=where)
            if key == "metric" and not (known(value) or (isinstance(value, list) and value and all(known(m) for m in value))):
                raise SpecError(f"metric must be one of {', '.join(METRICS)}, topK (K from 2), or a list of them, got {str(value)[:60]}", node=where)
            if key == "normalize":
                if not isinstance(value, list) or any(
                    v not in self.inputs or self.dtype(v) != "float" or not self.shape(v) or not is_batch(self.shape(v)[0]) for v in value
                ):
                    raise SpecError("normalize must list float inputs with a batch axis", node=where)
            self.train[key] = float(value) if kind is float else value

    def finish(self) -> "Graph":
        """Name what is still unnamed and check the graph is ready to compile."""
        leftovers = [n for n in self.nx if n.startswith("~")]
        if leftovers:
            self.rename({t: self.fresh(f"t{t[1:]}") for t in leftovers})
        if self.loss is None:
            raise SpecError("no loss: name the scalar to minimise", node="loss", source=self.source)
        return self


def op_function(name: str):
    """The module-level function for a public op, e.g. ``sg.relu``."""
    opdef = ops.REGISTRY[name]

    def function(*args: Any, **attrs: Any) -> Tensor:
        graphs = [a.graph for a in args if isinstance(a, Tensor)]
        if not graphs:
            raise SpecError(f"{name}() needs a tensor argument")
        if opdef.arity is not None and len(args) > opdef.arity:
            return graphs[0].apply(name, *args[: opdef.arity], positional=list(args[opdef.arity :]), **attrs)
        return graphs[0].apply(name, *args, **attrs)

    function.__name__ = name
    function.__doc__ = f"{ops.registry.signature(opdef)}\n\n{opdef.doc}"
    function.__signature__ = python_signature(opdef)  # help() shows the op's own arguments
    return function


def python_signature(opdef) -> inspect.Signature:
    params = [inspect.Parameter(t, inspect.Parameter.POSITIONAL_ONLY) for t in ops.registry.tensor_names(opdef)]
    if opdef.arity is None:
        params = [inspect.Parameter("tensors", inspect.Parameter.VAR_POSITIONAL)]
    for key, default in opdef.attrs:
        kind = inspect.Parameter.KEYWORD_ONLY if opdef.arity is None else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(key, kind, default=inspect.Parameter.empty if default is ops.REQUIRED else default))
    return inspect.Signature(params)


OP_FUNCTIONS = {name: op_function(name) for name, op in ops.REGISTRY.items() if op.public}
