"""``symgraph export``: a trained model as a forward-only C library.

The library is the model's forward pass (the same code and memory plan as the
compiled model's ``forward``, without training, gradients or their arena),
the input standardisation the trainer applied, and the weights: read from a
checkpoint folder at run time by ``NAME_load``, or with ``embed_weights``
compiled in as constant arrays, so that the library opens no file at all.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .checkpoint import load_checkpoint
from .codegen import ENV, build_program, write_atomically
from .codegen.c import leaf_info, model_context, output_info, runtime_files
from .codegen.common import source_name
from .ir import Graph
from .names import c_prefix

PER_LINE = 6  # numbers per line of an embedded weight table


def library_files(g: Graph, checkpoint: str | Path, embed_weights: bool = False, dtype: str = "float32") -> dict[str, str]:
    """File name -> text: NAME.h, NAME.c, example.c and a Makefile."""
    program = build_program(g, dtype)
    shapes = SimpleNamespace(params={leaf.name: tuple(int(d) for d in leaf.shape) for leaf in program.params},
                             inputs={leaf.name: tuple(int(d) for d in leaf.shape) for leaf in program.inputs})
    found = load_checkpoint(checkpoint, shapes)  # its params, and any normalisation, of this model's shapes
    api = c_prefix(g.name)
    context, _ = model_context(program, api, dtype, forward_only=True)
    stem = g.name
    inputs, stats = [], []
    scratch = 0
    for leaf in program.eval_inputs():
        info = dict(leaf_info(leaf), var=f"input_{len(inputs)}", stat=None, scratch=None)
        info["example_size"] = info["size"] * example_count(program) if info["batched"] else info["size"]
        if leaf.dtype == "float" and info["batched"]:
            info["scratch"], scratch = scratch, scratch + 1
            if leaf.name in found.stats:
                mean, std = found.stats[leaf.name]
                info["stat"] = len(stats)
                stats.append(dict(index=len(stats), name=leaf.name, count=mean.size,
                                  mean=[repr(float(v)) for v in mean.ravel()], std=[repr(float(v)) for v in std.ravel()]))
        inputs.append(info)
    outputs = []
    for k, (name, node) in enumerate(zip(program.outputs, program.output_nodes)):
        info = dict(output_info(name, program.eval_graph.shape(node)), var=f"output_{k}")
        info["example_size"] = info["size"] * (example_count(program) if info["batched"] else 1)
        outputs.append(info)
    params = []
    for leaf in program.params:
        info = dict(leaf_info(leaf), count=int(np.prod(leaf.shape, dtype=np.int64)))
        if embed_weights:
            info["numbers"] = weight_lines(found.params[leaf.name], dtype)
        params.append(info)
    context.update(
        header=f"{stem}.h", stem=stem, embedded=embed_weights, checkpoint=Path(checkpoint).name or str(checkpoint),
        source=source_name(program), inputs=inputs, outputs=outputs, params=params, stats=stats,
        normalized=[s["name"] for s in stats] if embed_weights else [i["name"] for i in inputs if i["scratch"] is not None],
        normalizable=any(i["scratch"] is not None for i in inputs), example_count=example_count(program),
        summary_outputs=[o["name"] for o in outputs if not o["batched"]],
        max_rank=max([i["rank"] for i in inputs] + [o["rank"] for o in outputs] + [p["rank"] for p in params] + [1]),
    )
    return {
        f"{stem}.h": ENV.get_template("c/export/library.h.j2").render(context),
        f"{stem}.c": ENV.get_template("c/export/library.c.j2").render(context),
        "example.c": ENV.get_template("c/export/example.c.j2").render(context),
        "Makefile": ENV.get_template("c/export/Makefile.j2").render(context),
        # the kernels, and the .npy reader unless the weights are embedded: a library neither trains nor reads data
        **{name: text for name, text in runtime_files(ENV).items() if name == "sg_kernels.h" or name == "sg_npy.h" and not embed_weights},
    }


def export_library(g: Graph, checkpoint: str | Path, out_dir: str | Path, embed_weights: bool = False, dtype: str = "float32") -> Path:
    """Write the library into ``out_dir`` (a folder symgraph may replace: see ``codegen.check_output``)."""
    return write_atomically(library_files(g, checkpoint, embed_weights, dtype), out_dir)


def example_count(program) -> int:
    """Examples in the example program's call: one, or a whole batch where the model takes only those."""
    return program.whole_batch or 1


def weight_lines(values: np.ndarray, dtype: str) -> list[str]:
    """A weight table's numbers, exact in the model's precision, PER_LINE to a line."""
    texts = [c_number(float(v), dtype) for v in np.asarray(values, dtype=dtype).ravel()]
    return [", ".join(texts[i:i + PER_LINE]) + "," for i in range(0, len(texts), PER_LINE)]


def c_number(value: float, dtype: str) -> str:
    """A C literal that reads back as exactly ``value`` in ``dtype`` (9 digits for float, 17 for double)."""
    if not np.isfinite(value):
        return "NAN" if np.isnan(value) else ("INFINITY" if value > 0 else "-INFINITY")
    text = f"{value:.9g}" if dtype == "float32" else f"{value:.17g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + ("F" if dtype == "float32" else "")
