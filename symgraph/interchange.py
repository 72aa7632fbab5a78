"""Interchange with other tools: a model's forward graph as ONNX, and
checkpoints as safetensors files.

``export_onnx`` writes the spec's evaluation graph (dropout off) with standard
ONNX operators only, the parameters as initializers and, given the stored input
normalisation, the standardisation of those inputs in front, so that an ONNX
runtime fed raw inputs computes what symgraph's prediction computes.

``checkpoint_to_safetensors`` and ``safetensors_to_checkpoint`` move the
parameters and the input normalisation of a trainer's checkpoint folder into
one safetensors file and back; the optimiser's state and the epoch count stay
behind, so a converted checkpoint starts training afresh from its parameters.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from .checkpoint import MARKER, load_checkpoint
from .codegen import umask
from .codegen.common import merged_batch
from .errors import SpecError
from .ir import Graph, is_batch
from .names import IDENTIFIER
from .ops import REGISTRY, X
from .passes import fold_constants, remove_dropout

OPSET = 18  # the first opset in which every Reduce* op takes its axes as an input
FORMAT = "symgraph-checkpoint"  # the safetensors metadata value that marks our files
FLOAT, INT64 = 1, 7  # onnx.TensorProto.FLOAT and INT64 (onnx is imported only when exporting)


# -- ONNX export ----------------------------------------------------------------------
class OnnxGraph:
    """The ONNX nodes and initializers of one export, and the names they use.

    Every tensor name is either a spec name (the node's own) or a fresh
    ``sg_`` name that no node of the symgraph graph has.
    """

    def __init__(self, g: Graph, batch_input: str | None, symbolic: bool):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.g = g
        self.batch_input = batch_input  # the graph input the batch size is read from
        self.symbolic = symbolic  # False: the batch axis is fixed at the compiled size
        self.nodes: list = []
        self.initializers: list = []
        self.taken = set(g.nx)
        self.counter = itertools.count()
        self.batch_vector: str | None = None  # the 1-D [n] tensor, built on first use

    def fresh(self, stem: str) -> str:
        """A tensor name no other tensor and no symgraph node has."""
        for k in self.counter:
            name = f"sg_{stem}_{k}"
            if name not in self.taken:
                self.taken.add(name)
                return name
        raise AssertionError("unreachable")

    def add(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        """One ONNX node; returns its output's name (``out``, else a fresh one)."""
        out = out or self.fresh(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def constant(self, value, stem: str = "const", dtype=np.float32) -> str:
        """An initializer holding ``value`` (axes and shapes are int64)."""
        name = self.fresh(stem)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def axes(self, axes) -> str:
        return self.constant(list(axes), "axes", np.int64)

    def dim(self, d) -> int | str:
        """A dim of a graph input or output: the batch axis is the symbolic ``batch``."""
        return "batch" if self.symbolic and is_batch(d) else int(d)

    def batch_size(self) -> str:
        """The 1-D int64 tensor ``[n]``: the first axis of the batch input, read at run time."""
        if self.batch_vector is None:
            if self.batch_input is None:
                raise SpecError("the outputs use the batch size but read no input with a batch axis", node="dims.batch", source=self.g.source)
            self.batch_vector = self.add("Shape", [self.batch_input], self.fresh("batch_size"), start=0, end=1)
        return self.batch_vector

    def shape_tensor(self, shape: tuple) -> str:
        """A 1-D int64 tensor holding ``shape``, with the batch axis read at run time."""
        if not (self.symbolic and any(is_batch(d) for d in shape)):
            return self.constant([int(d) for d in shape], "shape", np.int64)
        parts = [self.batch_size() if is_batch(d) else self.constant([int(d)], "dim", np.int64) for d in shape]
        return self.add("Concat", parts, axis=0)


Exporter = Callable[[OnnxGraph, str, list, dict, str], str]


def same(op_type: str) -> Exporter:
    """An op whose ONNX twin takes the same arguments (ONNX broadcasts as NumPy does)."""
    return lambda o, out, args, attrs, node: o.add(op_type, args, out)


def export_pow(o, out, args, attrs, node):
    return o.add("Pow", [args[0], o.constant(attrs["p"], "p")], out)


def export_step(o, out, args, attrs, node):
    # 1 where x > 0 else 0, like (x > 0).astype(DTYPE)
    return o.add("Cast", [o.add("Greater", [args[0], o.constant(0.0, "zero")])], out, to=FLOAT)


def export_const(o, out, args, attrs, node):
    value = attrs["value"]
    if o.symbolic and is_batch(value):
        scalar = o.add("Reshape", [o.batch_size(), o.constant([], "scalar", np.int64)])
        return o.add("Cast", [scalar], out, to=FLOAT)
    return o.constant(float(value))


def export_transpose(o, out, args, attrs, node):
    return o.add("Transpose", args, out, perm=list(attrs["axes"]))


def export_reshape(o, out, args, attrs, node):
    return o.add("Reshape", [args[0], o.shape_tensor(attrs["shape"])], out)


def reduce(op_type: str) -> Exporter:
    def export(o, out, args, attrs, node):
        if not attrs["axis"]:  # reducing over no axis leaves x as it is; ONNX would reduce all
            return o.add("Identity", args, out)
        return o.add(op_type, [args[0], o.axes(attrs["axis"])], out, keepdims=int(bool(attrs["keepdims"])))

    return export


def export_concat(o, out, args, attrs, node):
    return o.add("Concat", args, out, axis=attrs["axis"])


def export_embedding(o, out, args, attrs, node):
    return o.add("Gather", args, out, axis=0)


def channels_first(o, x: str) -> str:
    """[batch, seq, channels] -> [batch, channels, seq], the layout of ONNX's Conv and pools."""
    return o.add("Transpose", [x], perm=[0, 2, 1])


def export_conv1d(o, out, args, attrs, node):
    x, kernel = args
    width = int(o.g.shape(o.g.args(node)[1])[0])
    weight = o.add("Transpose", [kernel], perm=[2, 1, 0])  # K[w, c_in, c_out] -> W[c_out, c_in, w]
    pad = attrs["padding"]
    # ONNX's Conv is a cross-correlation over zero-padded input, as conv1d is
    y = o.add("Conv", [channels_first(o, x), weight], kernel_shape=[width], strides=[attrs["stride"]], pads=[pad, pad])
    return o.add("Transpose", [y], out, perm=[0, 2, 1])


def pool(op_type: str) -> Exporter:
    def export(o, out, args, attrs, node):
        y = o.add(op_type, [channels_first(o, args[0])], kernel_shape=[attrs["size"]], strides=[attrs["stride"]])
        return o.add("Transpose", [y], out, perm=[0, 2, 1])

    return export


def along_axis(op_type: str) -> Exporter:
    return lambda o, out, args, attrs, node: o.add(op_type, args, out, axis=attrs["axis"])


def export_cross_entropy(o, out, args, attrs, node):
    logits, labels = args
    log_p = o.add("LogSoftmax", [logits], axis=-1)
    picked = o.add("GatherElements", [log_p, o.add("Unsqueeze", [labels, o.axes([-1])])], axis=-1)
    return o.add("Neg", [o.add("ReduceMean", [picked], keepdims=0)], out)


def export_conv2d(o, out, args, attrs, node):
    x, kernel = args
    kh, kw = (int(d) for d in o.g.shape(o.g.args(node)[1])[:2])
    weight = o.add("Transpose", [kernel], perm=[3, 2, 0, 1])  # K[kh, kw, c_in, c_out] -> W[c_out, c_in, kh, kw]
    pad, stride = attrs["padding"], attrs["stride"]
    y = o.add("Conv", [image_channels_first(o, x), weight], kernel_shape=[kh, kw], strides=[stride, stride], pads=[pad] * 4)
    return o.add("Transpose", [y], out, perm=[0, 2, 3, 1])


def image_channels_first(o, x: str) -> str:
    """[batch, height, width, channels] -> [batch, channels, height, width], ONNX's layout of images."""
    return o.add("Transpose", [x], perm=[0, 3, 1, 2])


def pool2d(op_type: str) -> Exporter:
    def export(o, out, args, attrs, node):
        size, stride = attrs["size"], attrs["stride"]
        y = o.add(op_type, [image_channels_first(o, args[0])], kernel_shape=[size, size], strides=[stride, stride])
        return o.add("Transpose", [y], out, perm=[0, 2, 3, 1])

    return export


def export_upsample2d(o, out, args, attrs, node):
    factor = float(attrs["factor"])
    scales = o.constant(np.array([1.0, factor, factor, 1.0]), "scales")
    return o.add("Resize", [args[0], "", scales], out, mode="nearest", nearest_mode="floor", coordinate_transformation_mode="asymmetric")


def export_layer_norm(o, out, args, attrs, node):
    # as symgraph computes it along any one axis (ONNX's LayerNormalization takes the trailing axes only)
    axes = o.axes([attrs["axis"]])
    centered = o.add("Sub", [args[0], o.add("ReduceMean", [args[0], axes], keepdims=1)])
    variance = o.add("ReduceMean", [o.add("Mul", [centered, centered]), axes], keepdims=1)
    return o.add("Div", [centered, o.add("Sqrt", [o.add("Add", [variance, o.constant(attrs["eps"], "eps")])])], out)


def export_elementwise(o, out, args, attrs, node):
    """Any element-wise op from its sympy expression, which says what it computes
    (``gelu``'s is x * (1 + erf(x / sqrt(2))) / 2): one ONNX node per operation."""
    import sympy as sp
    from sympy.codegen.cfunctions import expm1

    from .ops.symbolic import op_expr, relu, sgn, sigmoid, softplus, step

    unary = {sp.exp: "Exp", sp.log: "Log", sp.tanh: "Tanh", sp.erf: "Erf", sp.Abs: "Abs", relu: "Relu", sgn: "Sign",
             sigmoid: "Sigmoid", softplus: "Softplus"}
    symbols = dict(zip(X, args))

    def build(expr, target=None) -> str:
        if expr in symbols:
            return o.add("Identity", [symbols[expr]], target) if target else symbols[expr]
        if expr.is_number:
            name = o.constant(float(expr))
            return o.add("Identity", [name], target) if target else name
        if expr.is_Add or expr.is_Mul:
            kind = "Add" if expr.is_Add else "Mul"
            number = [a for a in expr.args if a.is_number]  # sqrt(2)/sqrt(pi): one constant
            first, *rest = ([expr.func(*number)] if number else []) + [a for a in expr.args if not a.is_number]
            acc = build(first)
            for i, term in enumerate(rest):
                acc = o.add(kind, [acc, build(term)], target if i == len(rest) - 1 else None)
            return acc
        if expr.is_Pow:
            if expr.exp == sp.Rational(1, 2):
                return o.add("Sqrt", [build(expr.base)], target)
            return o.add("Pow", [build(expr.base), o.constant(float(expr.exp), "p")], target)
        if isinstance(expr, expm1):
            return o.add("Sub", [o.add("Exp", [build(expr.args[0])]), o.constant(1.0, "one")], target)
        if isinstance(expr, step):
            return o.add("Cast", [o.add("Greater", [build(expr.args[0]), o.constant(0.0, "zero")])], target, to=FLOAT)
        if type(expr) in unary:
            return o.add(unary[type(expr)], [build(expr.args[0])], target)
        raise SpecError(f"{expr.func} has no ONNX form", node=node, source=o.g.source)

    return build(op_expr(o.g.op(node), o.g.attrs_key(node)), out)


def export_binary_cross_entropy(o, out, args, attrs, node):
    z, y = args
    if o.g.dtype(o.g.args(node)[1]) == "int":
        y = o.add("Cast", [y], to=FLOAT)
    # max(z, 0) - z*y + log(1 + exp(-|z|)): softplus of a non-positive number never overflows
    tail = o.add("Softplus", [o.add("Neg", [o.add("Abs", [z])])])
    terms = o.add("Add", [o.add("Sub", [o.add("Relu", [z]), o.add("Mul", [z, y])]), tail])
    return o.add("ReduceMean", [terms], out, keepdims=0)


# Every op an evaluation graph of the public ops holds (macros are expanded
# and dropout is gone by then); gradient-only ops have no entry. An
# element-wise op without an entry is exported from its expression.
EXPORTERS: dict[str, Exporter] = {
    "add": same("Add"), "sub": same("Sub"), "mul": same("Mul"), "div": same("Div"),
    "neg": same("Neg"), "exp": same("Exp"), "log": same("Log"), "sqrt": same("Sqrt"), "abs": same("Abs"),
    "sigmoid": same("Sigmoid"), "tanh": same("Tanh"), "relu": same("Relu"), "sign": same("Sign"),
    "pow": export_pow, "step": export_step, "const": export_const,
    "matmul": same("MatMul"), "transpose": export_transpose, "reshape": export_reshape, "concat": export_concat,
    "sum": reduce("ReduceSum"), "mean": reduce("ReduceMean"), "max": reduce("ReduceMax"),
    "embedding": export_embedding, "conv1d": export_conv1d,
    "max_pool1d": pool("MaxPool"), "avg_pool1d": pool("AveragePool"),
    "conv2d": export_conv2d, "max_pool2d": pool2d("MaxPool"), "avg_pool2d": pool2d("AveragePool"),
    "upsample2d": export_upsample2d, "layer_norm": export_layer_norm,
    "softmax": along_axis("Softmax"), "log_softmax": along_axis("LogSoftmax"),
    "cross_entropy": export_cross_entropy, "binary_cross_entropy": export_binary_cross_entropy,
}


def evaluation_graph(g: Graph) -> tuple[Graph, list[str]]:
    """``g`` in evaluation mode (dropout masks folded away), and what it outputs."""
    evaluated = fold_constants(remove_dropout(g))
    outputs = list(evaluated.outputs) or ([evaluated.loss] if evaluated.loss is not None else [])
    if not outputs:
        raise SpecError("nothing to export: the graph has neither outputs nor a loss", node="outputs", source=g.source)
    return evaluated, outputs


def export_onnx(g: Graph, params: dict, stats: dict | None = None):
    """The forward graph of ``g`` in evaluation mode as an ONNX model.

    Parameters
    ----------
    g : Graph
        The spec's graph (``symgraph.load``); its outputs, else its loss, are
        the model's outputs, under their spec names.
    params : dict
        Parameter name -> array (other entries, such as a checkpoint's
        optimiser state, are ignored); stored as float32 initializers.
    stats : dict, optional
        Input name -> (mean, std), a checkpoint's normalisation: the model
        standardises those inputs, ``(x - mean) / std``, so it takes raw inputs.

    Returns
    -------
    onnx.ModelProto
        Opset 18, checked with ``onnx.checker``. Its inputs are those the
        outputs read (float32, or int64 for ids and labels), with the batch
        axis as the symbolic dim ``batch`` (fixed when the model folds the
        batch axis into another and takes whole batches only).

    Raises
    ------
    SpecError
        A parameter missing or misshapen, bad stats, or an op with no ONNX form.
    """
    onnx = optional_module("onnx")

    evaluated, outputs = evaluation_graph(g)
    needed = evaluated.needed_by(outputs)
    order = [n for n in evaluated.order() if n in needed]
    inputs = [n for n in order if evaluated.op(n) == "input"]
    batched = [n for n in inputs if evaluated.shape(n) and is_batch(evaluated.shape(n)[0])]
    o = OnnxGraph(evaluated, batched[0] if batched else None, symbolic=merged_batch(evaluated) is None)
    normalize = checked_stats(evaluated, stats or {})  # stats of an input the outputs do not read go unused
    tensors: dict[str, str] = {}  # symgraph node -> the ONNX tensor holding its value
    graph_inputs = []
    for node in order:
        op = evaluated.op(node)
        if op == "input":
            elem = INT64 if evaluated.dtype(node) == "int" else FLOAT
            shape = [o.dim(d) for d in evaluated.shape(node)]
            graph_inputs.append(onnx.helper.make_tensor_value_info(node, elem, shape))
            tensors[node] = standardized(o, node, *normalize[node]) if node in normalize else node
        elif op == "param":
            value = checked_param(evaluated, node, params)
            o.initializers.append(onnx.numpy_helper.from_array(value.astype(np.float32), node))
            tensors[node] = node
        elif op in EXPORTERS or (op in REGISTRY and REGISTRY[op].elementwise):
            args = [tensors[a] for a in evaluated.args(node)]
            export = EXPORTERS.get(op, export_elementwise)
            tensors[node] = export(o, onnx_name(o, node), args, evaluated.attrs(node), node)
        else:
            raise SpecError(f"op {op!r} has no ONNX form (it belongs to gradient graphs)", node=node, source=g.source)
    graph_outputs = []
    for name in outputs:
        if name in normalize:
            raise SpecError("an output that is a standardised input would need the raw input's name", node=name, source=g.source)
        if tensors[name] != name:  # a constant: give the output its spec name
            o.add("Identity", [tensors[name]], name)
        graph_outputs.append(onnx.helper.make_tensor_value_info(name, FLOAT, [o.dim(d) for d in evaluated.shape(name)]))
    graph = onnx.helper.make_graph(o.nodes, g.name, graph_inputs, graph_outputs, o.initializers)
    opsets = [onnx.helper.make_opsetid("", OPSET)]
    model = onnx.helper.make_model(
        graph, opset_imports=opsets, producer_name="symgraph",
        ir_version=onnx.helper.find_min_ir_version_for(opsets),  # older runtimes refuse newer IR versions
        doc_string=f"{g.name}: the forward graph of {g.source or 'a symgraph graph'} in evaluation mode",
    )
    onnx.checker.check_model(model)
    return model


def onnx_name(o: OnnxGraph, node: str) -> str:
    """The ONNX name of ``node``'s value: its spec name, or a fresh one for a temporary."""
    return node if IDENTIFIER.match(node) else o.fresh("t")


def checked_param(g: Graph, node: str, params: dict) -> np.ndarray:
    if node not in params:
        raise SpecError("no value given for this parameter", node=node, source=g.source)
    value = np.asarray(params[node])
    shape = tuple(int(d) for d in g.shape(node))
    if value.shape != shape:
        raise SpecError(f"the value has shape {value.shape}, the parameter's is {shape}", node=node, source=g.source)
    if value.dtype.kind not in "biuf":
        raise SpecError(f"the value holds {value.dtype}, not numbers", node=node, source=g.source)
    return value


def checked_stats(g: Graph, stats: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each normalised input's mean and std as float32 arrays of one example's shape."""
    checked = {}
    for name, pair in stats.items():
        if name not in g.nx or g.op(name) != "input" or g.dtype(name) != "float":
            raise SpecError("normalisation stats given for something that is not a float input", node=str(name), source=g.source)
        example = tuple(int(d) for d in g.shape(name)[1:])
        try:
            mean, std = (np.broadcast_to(np.asarray(v, np.float32), example) for v in pair)
        except (TypeError, ValueError):
            raise SpecError(f"the stats must be (mean, std), arrays of one example's shape {example}", node=name, source=g.source) from None
        checked[name] = (mean, std)
    return checked


def standardized(o: OnnxGraph, name: str, mean: np.ndarray, std: np.ndarray) -> str:
    """The tensor ``(x - mean) / std`` of the graph input ``name``."""
    centered = o.add("Sub", [name, o.constant(mean, f"{name}_mean")])
    return o.add("Div", [centered, o.constant(std, f"{name}_std")], o.fresh(f"{name}_standardized"))


def save_onnx(g: Graph, params: dict, path: str | Path, stats: dict | None = None) -> Path:
    """Write ``export_onnx(g, params, stats)`` to ``path``, which must not exist yet."""
    onnx = optional_module("onnx")

    path = Path(path)
    check_new_path(path, written_onnx)
    model = export_onnx(g, params, stats)
    with staged(path) as staging:
        onnx.save_model(model, staging)
    return path


def export_onnx_file(g: Graph, checkpoint: str | Path, path: str | Path) -> Path:
    """``symgraph export --format onnx``: the checkpoint's model, with its input normalisation, to ``path``."""
    found = load_checkpoint(checkpoint)
    return save_onnx(g, found.params, path, found.stats)


def convert(source: str | Path, out: str | Path) -> Path:
    """``symgraph convert``: a checkpoint folder to a .safetensors file, or such a file to a checkpoint folder."""
    source = Path(source)
    if source.is_dir():
        return checkpoint_to_safetensors(source, out)
    if source.is_file() and source.suffix == ".safetensors":
        return safetensors_to_checkpoint(source, out)
    raise SpecError("is neither a checkpoint folder nor a .safetensors file", node="convert", source=str(source))


def optional_module(module: str, extra: str = "interchange"):
    """An optional dependency, or a SpecError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SpecError(f"this needs {module}: pip install 'symgraph[{extra}]'", node=module) from None


# -- safetensors ----------------------------------------------------------------------
def checkpoint_to_safetensors(ckpt_dir: str | Path, out_path: str | Path) -> Path:
    """Write a checkpoint's parameters and input normalisation as one safetensors file.

    Tensors are named as in the checkpoint: each parameter by its name, and
    ``normalize.mean.X`` / ``normalize.std.X`` for each standardised input X.
    The metadata names the model, each parameter's shape and the normalised
    inputs. ``out_path`` must not exist yet.

    Raises
    ------
    SpecError
        ``ckpt_dir`` is not a checkpoint folder, lacks a file its marker lists,
        or ``out_path`` exists.
    """
    save_file = optional_module("safetensors.numpy").save_file

    out_path = Path(out_path)
    check_new_path(out_path, written_safetensors)
    found = load_checkpoint(ckpt_dir)
    tensors = {name: np.asarray(value, order="C") for name, value in found.params.items()}
    for name, (mean, std) in found.stats.items():
        tensors[f"normalize.mean.{name}"] = np.asarray(mean, order="C")
        tensors[f"normalize.std.{name}"] = np.asarray(std, order="C")
    metadata = {
        "format": FORMAT,
        "model": model_name(Path(ckpt_dir)),
        "params": json.dumps({name: list(value.shape) for name, value in found.params.items()}),
        "normalize": json.dumps(sorted(found.stats)),
    }
    with staged(out_path) as staging:
        save_file(tensors, staging, metadata=metadata)
    return out_path


def safetensors_to_checkpoint(path: str | Path, out_dir: str | Path) -> Path:
    """Write a checkpoint folder, which the trainers' ``--init-from`` accepts,
    from a safetensors file of parameters (and ``normalize.mean.X`` /
    ``normalize.std.X`` tensors).

    The folder holds one ``NAME.npy`` per tensor and the marker listing them;
    having no optimiser state or epoch count, it starts training at epoch 0.
    ``out_dir`` must not exist yet; it appears complete or not at all.

    Raises
    ------
    SpecError
        ``path`` is missing or unreadable, holds a tensor no checkpoint file
        could be named after, or ``out_dir`` exists.
    """
    safe_open = optional_module("safetensors").safe_open

    path, out_dir = Path(path), Path(out_dir)
    if not path.is_file():
        raise SpecError("no such file", node="safetensors", source=str(path))
    check_new_path(out_dir)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
        raise SpecError(f"cannot be read as safetensors: {exc}", node="safetensors", source=str(path)) from None
    if metadata.get("format") not in (None, FORMAT):
        raise SpecError(f"holds {metadata['format']!r}, not a symgraph checkpoint", node="safetensors", source=str(path))
    for name in tensors:
        if not checkpoint_tensor_name(name):
            raise SpecError("is not a parameter or normalize.mean.X / normalize.std.X name", node=name, source=str(path))
    model = metadata.get("model") or "a model"
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp.", dir=out_dir.parent))
    try:
        for name, value in tensors.items():
            np.save(staging / f"{name}.npy", value)
        with open(staging / MARKER, "w", encoding="utf-8") as handle:
            handle.write(f"# a checkpoint of {model}, converted from {path.name} by symgraph\n")
            handle.writelines(f"{name}.npy\n" for name in sorted(tensors))
        os.chmod(staging, 0o777 & ~umask())  # mkdtemp's folder is private; a checkpoint is an ordinary folder
        os.rename(staging, out_dir)  # fails rather than replace a non-empty folder made meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def checkpoint_tensor_name(name: str) -> bool:
    """A parameter's name, or a normalisation's; never a trainer's own file (``training.state``)."""
    kind, _, rest = name.partition(".")
    if kind == "normalize":
        stat, _, input_name = rest.partition(".")
        return stat in ("mean", "std") and bool(IDENTIFIER.match(input_name))
    return bool(IDENTIFIER.match(name))


def model_name(folder: Path) -> str:
    """The model a checkpoint belongs to, as its marker's first line says (empty if it does not)."""
    first = (folder / MARKER).read_text(encoding="utf-8").partition("\n")[0]
    found = re.match(r"# a checkpoint of (\S+?),", first)
    return found.group(1) if found else ""


def check_new_path(path: Path, ours: Callable[[Path], bool] | None = None) -> None:
    """Refuse a path that exists, unless it is a regular file this command
    wrote (``ours`` says), or whose folder does not exist."""
    if os.path.lexists(path) and not (ours is not None and path.is_file() and not path.is_symlink() and ours(path)):
        raise SpecError("already exists and is not a file symgraph wrote there; choose another path", node="output", source=str(path))
    if not path.absolute().parent.is_dir():
        raise SpecError("its folder does not exist", node="output", source=str(path))


@contextmanager
def staged(path: Path):
    """A temporary file beside ``path`` to write, renamed to ``path`` when the block succeeds."""
    handle, staging = tempfile.mkstemp(prefix=path.name + ".tmp.", dir=path.parent)
    os.close(handle)
    try:
        yield staging
        os.chmod(staging, 0o666 & ~umask())  # mkstemp's file is private (and a writer may make its own): an ordinary output
    except BaseException:
        os.unlink(staging)
        raise
    os.replace(staging, path)


def written_onnx(path: Path) -> bool:
    """Whether path is an ONNX model that symgraph exported."""
    try:
        return optional_module("onnx").load(str(path), load_external_data=False).producer_name == "symgraph"
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def written_safetensors(path: Path) -> bool:
    """Whether path is a safetensors file that symgraph converted."""
    try:
        with optional_module("safetensors").safe_open(str(path), framework="numpy") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
