"""``sg.compile``: a graph in, a callable model (backed by generated code) out."""

from __future__ import annotations

import importlib.util
import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .codegen import build_program, render, write_atomically
from .codegen.c import check_memory
from .ir import Graph, is_batch

TARGETS = ("numpy", "c")
_modules = itertools.count()


class CompiledModel:
    """A compiled graph: ``init_params``, ``forward``, ``loss_and_grads``.

    Every call runs the generated code itself: the module written to
    ``out_dir`` for NumPy, the shared library built from the C sources for C.
    """

    def __init__(self, program, target: str, out_dir: Path, backend: Any):
        self.program = program
        self.target = target
        self.out_dir = out_dir
        self.dtype = np.dtype(program.dtype)
        self._backend = backend

    @property
    def params(self) -> dict[str, tuple]:
        """Each parameter's name and shape."""
        return {p.name: tuple(int(d) for d in p.shape) for p in self.program.params}

    @property
    def inputs(self) -> dict[str, tuple]:
        """Each input's name and shape (the batch axis at the compiled batch size)."""
        return {i.name: tuple(int(d) for d in i.shape) for i in self.program.inputs}

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Initial parameters by the spec's schemes: the same in both targets for a seed."""
        return self._backend.init_params(seed)

    def forward(self, params: dict, inputs: dict) -> dict[str, np.ndarray]:
        """Outputs in evaluation mode (dropout off)."""
        return self._backend.forward(self._params(params), self._inputs(inputs, [i.name for i in self.program.eval_inputs()]))

    def predict(self, inputs: dict, checkpoint=None, params: dict | None = None) -> dict[str, np.ndarray]:
        """The outputs for inputs of any number of examples (no labels needed).

        Give ``checkpoint`` (a folder a trainer saved, or a Checkpoint), whose
        input normalisation is applied as the trainers apply it, or ``params``
        (inputs then go in as they are). The examples run in batches of the
        compiled size; a model that folds the batch axis into another takes
        a whole number of its batches.
        """
        from .checkpoint import Checkpoint, check_params, load_checkpoint

        if (checkpoint is None) == (params is None):
            raise ValueError("give either checkpoint= (a folder a trainer saved) or params=")
        names = [i.name for i in self.program.eval_inputs()]
        count = self._backend.check_inputs(inputs, names)  # the caller's shapes, before any batching
        if checkpoint is not None:
            if isinstance(checkpoint, Checkpoint):
                found = checkpoint
                check_params(found.params, self.params, "<checkpoint>")
            else:
                found = load_checkpoint(checkpoint, self)  # checks its params and normalisation against this model
            params, inputs = found.params, found.normalized(inputs)
        batched = {i.name for i in self.program.eval_inputs() if i.shape and is_batch(i.shape[0])}
        if count is None:
            return self.forward(params, inputs)
        if count == 0:
            raise ValueError("no examples to predict")
        step = self.program.whole_batch or self.program.compiled_batch
        if self.program.whole_batch is not None and count % step:
            raise ValueError(f"{count} examples: this model takes whole batches of {step} (it folds the batch axis into another)")
        shapes = dict(zip(self.program.outputs, (self.program.eval_graph.shape(n) for n in self.program.output_nodes)))
        summary = [name for name, shape in shapes.items() if not (shape and is_batch(shape[0]))]
        if summary and count > step:
            raise ValueError(f"output {summary[0]} has no batch axis (it sums up a batch): predict at most {step} examples at once")
        parts = [self.forward(params, {k: v[start:start + step] if k in batched else v for k, v in inputs.items()})
                 for start in range(0, count, step)]
        return {name: np.concatenate([p[name] for p in parts]) if shapes[name] and is_batch(shapes[name][0]) else parts[0][name]
                for name in self.program.outputs}

    def loss_and_grads(self, params: dict, inputs: dict, training: bool = False, seed: int = 0,
                       first: int = 0, total: int | None = None) -> tuple[float, dict]:
        """The loss and its gradient for every param; dropout only with ``training``.
        ``first`` and ``total`` say that the inputs are examples [first, first + n)
        of a batch of ``total``: each example then draws the dropout mask it
        would in that batch (a share of a batch, as in data-parallel training)."""
        return self._backend.loss_and_grads(self._params(params), self._inputs(inputs), training, seed, first, total)

    def _params(self, params: dict) -> dict:
        out = {}
        for name, shape in self.params.items():
            if name not in params:
                raise ValueError(f"missing param {name!r}")
            value = np.asarray(params[name], dtype=self.dtype)
            if value.shape != shape:
                raise ValueError(f"param {name!r} has shape {value.shape}, expected {shape}")
            out[name] = value
        return out

    def _inputs(self, inputs: dict, names: list[str] | None = None) -> dict:
        names = [i.name for i in self.program.inputs] if names is None else names
        n = self._backend.check_inputs(inputs, names)
        limit = self.program.compiled_batch
        if n is not None and not 1 <= n <= limit:
            raise ValueError(f"a batch holds 1 to {limit} examples (the compiled batch size), got {n}")
        whole = self.program.whole_batch
        if whole is not None and n is not None and n != whole:
            raise ValueError(f"a batch of {n} examples: {self.program.merged_batch} folds the batch axis into another, so the model takes whole batches of {whole} only")
        return {k: inputs[k] for k in names}


def compile(  # noqa: A001 - the interface's name
    g: Graph,
    target: str = "numpy",
    out_dir: str | Path | None = None,
    dtype: str = "float32",
    passes: list | None = None,
    verbose: bool = False,
    max_memory: int | None = None,
) -> CompiledModel:
    """Generate code for ``g`` and load it.

    Parameters
    ----------
    g : Graph
    target : "numpy" or "c"
    out_dir : folder for the generated sources (a temporary folder if None)
    dtype : "float32" or "float64"
    passes : the optimisation passes to run (default ``CODEGEN``; ``[]`` for none)
    verbose : for C, say on stderr whether the cached build was reused and why
    max_memory : bytes the model may be planned to need (default: the memory available now)
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    program = build_program(g, dtype, passes)
    check_memory(program, max_memory)
    files = render(program, target)
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix=f"symgraph-{g.name}-"))
    write_atomically(files, out)
    if target == "c":
        from .codegen.c import LIBRARY
        from .native import Library, build

        library = build({name: files[name] for name in LIBRARY}, verbose=verbose)
        return CompiledModel(program, target, out, Library(program, library))
    return CompiledModel(program, target, out, load_module(out / "model.py"))


def load_module(path: Path):
    name = f"symgraph_generated_{next(_modules)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
