"""Reading what the generated trainers save: ``sg.load_checkpoint``.

A checkpoint is a folder of ``.npy`` files that both trainers write alike:
one per parameter, the optimiser's state (``optimizer.SLOT.NAME``), the input
normalisation (``normalize.mean.NAME``, ``normalize.std.NAME``), the training
state (``training.state``: [epochs done, steps done, seed]; the dots keep
these apart from any parameter's name) and the marker
``symgraph-checkpoint.txt`` that lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import SpecError

MARKER = "symgraph-checkpoint.txt"


@dataclass
class Checkpoint:
    """What a trainer saved: parameters, input normalisation and training state."""

    params: dict[str, np.ndarray]
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # input -> (mean, std)
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)  # "m.W1" -> Adam's or momentum's slot
    epochs: int = 0
    steps: int = 0
    seed: int | None = None

    def normalized(self, inputs: dict) -> dict:
        """``inputs`` with the stored normalisation applied, as the trainers apply it."""
        out = dict(inputs)
        for name, (mean, std) in self.stats.items():
            if name in out:
                out[name] = (np.asarray(out[name], np.float64) - mean) / std
        return out


def load_checkpoint(folder: str | Path, model=None) -> Checkpoint:
    """Read a checkpoint folder that a generated trainer wrote.

    Parameters
    ----------
    folder : the folder (``--save`` of either trainer)
    model : a CompiledModel, optional: its parameters must all be there, with
        their shapes, and no other (a checkpoint of another model is refused)

    Raises
    ------
    SpecError
        One line naming the folder and what is wrong.
    """
    where = str(folder)
    path = Path(folder)

    def refuse(why: str, node: str = "checkpoint"):
        raise SpecError(why, node=node, source=where)

    if not path.is_dir():
        refuse("is not a folder")
    marker = path / MARKER
    if not marker.is_file():
        refuse(f"is not a checkpoint: it has no {MARKER}")
    listed = [line for line in marker.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    arrays = {}
    for name in listed:
        if not name.endswith(".npy") or os.sep in name:
            continue
        file = path / name
        if not file.is_file():
            refuse(f"lists {name}, which is missing", node=name)
        try:
            arrays[name[: -len(".npy")]] = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            refuse(f"{name} cannot be read: {exc or 'it is empty'}", node=name)
        if arrays[name[: -len(".npy")]].dtype.kind not in "biuf":
            refuse(f"{name} holds {arrays[name[: -len('.npy')]].dtype}, not numbers", node=name)
    training = {key: arrays.pop(key) for key in list(arrays) if key.startswith("training.")}  # the trainer's own records
    state = training.get("training.state")
    found = Checkpoint(params={})
    means, stds = {}, {}
    for key, value in arrays.items():
        kind, _, rest = key.partition(".")
        if kind == "optimizer" and rest:
            found.optimizer[rest] = value
        elif kind == "normalize" and rest.startswith("mean."):
            means[rest[len("mean."):]] = value
        elif kind == "normalize" and rest.startswith("std."):
            stds[rest[len("std."):]] = value
        else:
            found.params[key] = value
    for name in sorted(set(means) ^ set(stds)):
        refuse(f"has half of {name}'s normalisation (normalize.mean.{name} and normalize.std.{name} go together)", node=name)
    found.stats = {name: (means[name], stds[name]) for name in means}
    for name, (mean, std) in found.stats.items():
        if mean.shape != std.shape or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(std)) or np.any(std <= 0):
            refuse(f"{name}'s normalisation must be a finite mean and a positive std of one shape", node=f"normalize.std.{name}")
    for name, value in found.params.items():
        if not np.all(np.isfinite(value)):
            refuse(f"{name} holds values that are not finite", node=f"{name}.npy")
    if state is not None:
        if state.shape != (3,) or state.dtype.kind not in "iu":
            refuse("training.state.npy must hold [epochs, steps, seed]", node="training.state.npy")
        found.epochs, found.steps, found.seed = (int(v) for v in state)
    if model is not None:
        check_params(found.params, model.params, where)
        for name, (mean, _) in found.stats.items():
            shape = model.inputs.get(name)
            if shape is None or tuple(mean.shape) != tuple(shape[1:]):
                refuse(f"normalises {name}, which {'has another shape in' if shape else 'is no input of'} this model", node=f"normalize.mean.{name}")
    return found


def check_params(params: dict, shapes: dict, where: str) -> None:
    """The parameters of one model, each with its shape: else one line saying what differs."""
    missing = [name for name in shapes if name not in params]
    foreign = [name for name in params if name not in shapes]
    if missing or foreign:
        said = "; ".join(part for part in (
            f"lacks {', '.join(missing)}" if missing else "",
            f"has {', '.join(foreign)}, which this model does not" if foreign else "",
        ) if part)
        raise SpecError(f"is the checkpoint of another model: it {said}", node="checkpoint", source=where)
    for name, shape in shapes.items():
        if tuple(params[name].shape) != tuple(shape):
            raise SpecError(f"{name} has shape {tuple(params[name].shape)}, the model's is {tuple(shape)}", node=name, source=where)
