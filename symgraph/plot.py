"""``symgraph plot``: training curves from a trainer's ``--log`` CSV file.

matplotlib is an optional extra (``pip install 'symgraph[plot]'``); nothing
else in symgraph needs it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from .errors import SpecError

LEADING, TRAILING = ("epoch", "train_loss", "val_loss"), ("examples_per_second",)
EXTRA = ("lr", "grad_norm")  # the learning rate in force and the mean gradient norm
FORMATS = ("png", "svg", "pdf")


def read_log(path: Path) -> dict[str, list[float]]:
    """Column -> values (NaN where a cell is empty), checked against the trainers'
    header: epoch,train_loss,val_loss[,val_METRIC],examples_per_second."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the log: {exc.__class__.__name__}", node="<file>", source=str(path)) from None
    rows = list(csv.reader(io.StringIO(text)))
    header = tuple(rows[0]) if rows else ()
    middle = header[len(LEADING) : len(header) - len(TRAILING)]
    if header[: len(LEADING)] != LEADING or header[-len(TRAILING) :] != TRAILING or not all(c.startswith("val_") or c in EXTRA for c in middle):
        raise SpecError(f"not a trainer log: the header must be {','.join(LEADING)}[,val_METRIC],lr,grad_norm,{','.join(TRAILING)}",
                        node="header", source=str(path))
    if len(rows) < 2:
        raise SpecError("the log has no epochs yet", node="rows", source=str(path))
    columns: dict[str, list[float]] = {c: [] for c in header}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpecError(f"line {number} has {len(row)} cells, expected {len(header)}", node=f"line {number}", source=str(path))
        for column, cell in zip(header, row):
            try:
                columns[column].append(float(cell) if cell else math.nan)
            except ValueError:
                raise SpecError(f"line {number}: {column} is not a number: {cell[:20]!r}", node=f"line {number}", source=str(path)) from None
    return columns


def plot(path: Path, fmt: str = "png") -> bytes:
    """The figure's bytes: losses per epoch on the left, the metric on the right."""
    if fmt not in FORMATS:
        raise SpecError(f"unknown plot format .{fmt} (use .png, .svg or .pdf)", node="plot", source=str(path))
    columns = read_log(path)
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError("plotting needs matplotlib: pip install 'symgraph[plot]' (or pip install matplotlib)", node="plot", source=str(path)) from None
    metrics = [c for c in columns if c.startswith("val_") and c != "val_loss"]
    metric = next((m for m in metrics if any(not math.isnan(v) for v in columns[m])), None)
    figure = Figure(figsize=(10 if metric else 6, 4), layout="constrained")
    axes = figure.subplots(1, 2 if metric else 1, squeeze=False)[0]
    epochs = columns["epoch"]
    axes[0].plot(epochs, columns["train_loss"], marker="o", label="train")
    if any(not math.isnan(v) for v in columns["val_loss"]):
        axes[0].plot(epochs, columns["val_loss"], marker="o", label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    if metric:
        name = metric.removeprefix("val_")
        axes[1].plot(epochs, columns[metric], marker="o", color="tab:green")
        axes[1].set(xlabel="epoch", ylabel=name, title=f"validation {name}")
    for ax in axes:
        ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=100)
    return buffer.getvalue()
