"""What the trainers report next to the validation loss, and what it is computed from.

A metric is an average over every scored element of the validation set:
the share of correct predictions (accuracy), the mean squared or absolute
error (mse, rmse, mae), or exp of the mean loss (perplexity). The model's
evaluate() returns the sum that the average needs for one batch, so that
the trainers add batches exactly, whatever their size.
"""

from __future__ import annotations

from .errors import SpecError
from .ir import Graph, is_batch, numel
from .ops import apply

METRICS = ("accuracy", "perplexity", "mse", "rmse", "mae")
ERRORS = ("mse", "rmse", "mae")  # the metrics that average an error


def classified(g: Graph) -> tuple[str, str] | None:
    """(scores, labels) where the loss is a cross-entropy on a label input."""
    if g.loss is None or g.op(g.loss) not in ("cross_entropy", "binary_cross_entropy"):
        return None
    scores, labels = g.args(g.loss)
    return (scores, labels) if g.op(labels) == "input" else None


def regressed(g: Graph) -> tuple[str, str] | None:
    """(predictions, targets) where the loss is the mean squared error
    mean((pred - target) ** 2), as mse() writes it (or the spec by hand)."""
    if g.loss is None or g.op(g.loss) != "mean" or g.shape(g.loss) != ():
        return None
    (square,) = g.args(g.loss)
    if g.op(square) != "pow" or g.attrs(square).get("p") != 2:
        return None
    (error,) = g.args(square)
    return tuple(g.args(error)) if g.op(error) == "sub" else None


def chosen(g: Graph) -> str | None:
    """The spec's train.metric, checked against its loss; else the loss's own:
    accuracy for a cross-entropy on labels, rmse for a mean squared error."""
    wanted = g.train.get("metric")
    labels, values = classified(g), regressed(g)
    needs = {
        "accuracy": (labels is not None, "a cross-entropy loss on a label input"),
        "perplexity": (g.loss is not None and g.op(g.loss) == "cross_entropy", "a cross_entropy loss"),
        **{m: (values is not None, "an mse loss (mean((pred - target) ** 2))") for m in ERRORS},
    }
    if wanted is not None:
        ok, what = needs[wanted]
        if not ok:
            raise SpecError(f"metric {wanted} needs {what}", node="train.metric", source=g.source)
        return wanted
    return "accuracy" if labels is not None else "rmse" if values is not None else None


def add_error_sum(g: Graph, metric: str | None) -> None:
    """For an error metric, a result ``error_sum`` of ``g``: the sum of squared
    (mse, rmse) or absolute (mae) errors over the batch."""
    if metric not in ERRORS:
        return
    pred, target = regressed(g)
    error = apply(g, "sub", [pred, target])
    each = apply(g, "abs", [error]) if metric == "mae" else apply(g, "pow", [error], {"p": 2.0})
    total = apply(g, "sum", [each])
    renamed = {}
    for temp, stem in ((error, "error"), (each, "abs_error" if metric == "mae" else "squared_error"), (total, "error_sum")):
        if temp.startswith("~"):  # else folded into a node that has a name
            renamed[temp] = g.fresh(stem)
            g.rename({temp: renamed[temp]})
    g.results["error_sum"] = renamed.get(total, total)


def scored_elements(g: Graph, metric: str | None) -> int:
    """How many elements of one example the metric averages over."""
    if metric == "accuracy":
        shape = g.shape(classified(g)[1])
    elif metric in ERRORS:
        shape = g.shape(g.args(g.loss)[0])  # the squared error's, broadcast
    else:
        return 1
    return numel(d for d in shape if not is_batch(d))
