"""What the trainers report next to the validation loss, and what it is computed from.

A metric is an average over every scored element of the validation set:
the share of correct predictions (accuracy), the mean squared or absolute
error (mse, rmse, mae), or exp of the mean loss (perplexity). The model's
evaluate() returns the sum that the average needs for one batch, so that
the trainers add batches exactly, whatever their size.
"""

from __future__ import annotations

import re

from .errors import SpecError
from .ir import Graph, is_batch, numel
from .ops import apply

METRICS = ("accuracy", "perplexity", "mse", "rmse", "mae", "macro_f1")  # and topK: the label among the K best scores
ERRORS = ("mse", "rmse", "mae")  # the metrics that average an error
CLASSIFYING = ("accuracy", "macro_f1")  # and topK


def top_k(metric: str) -> int | None:
    """K of a topK metric (top5: 5), else None."""
    found = re.fullmatch(r"top([1-9][0-9]{0,5})", metric)
    return int(found.group(1)) if found and int(found.group(1)) >= 2 else None


def known(metric) -> bool:
    return isinstance(metric, str) and (metric in METRICS or top_k(metric) is not None)


def loss_terms(g: Graph) -> list[str]:
    """What the loss adds up: itself, or the terms of a sum (a loss plus a penalty)."""
    if g.loss is None:
        return []
    found, stack = [], [g.loss]
    while stack:
        node = stack.pop()
        if g.op(node) == "add":
            stack.extend(reversed(g.args(node)))
        else:
            found.append(node)
    return found


def classifier_term(g: Graph) -> str | None:
    """The one cross-entropy on a label input among the loss's terms, if there is one."""
    hits = [t for t in loss_terms(g) if g.op(t) in ("cross_entropy", "binary_cross_entropy") and g.op(g.args(t)[1]) == "input"]
    return hits[0] if len(hits) == 1 else None


def classified(g: Graph) -> tuple[str, str] | None:
    """(scores, labels) of that cross-entropy."""
    term = classifier_term(g)
    return None if term is None else tuple(g.args(term))


def regression_term(g: Graph) -> str | None:
    """The one mean squared error mean((pred - target) ** 2) among the loss's
    terms, as mse() writes it (or the spec by hand), if there is one."""
    hits = []
    for term in loss_terms(g):
        if g.op(term) != "mean" or g.shape(term) != ():
            continue
        (square,) = g.args(term)
        if g.op(square) == "pow" and g.attrs(square).get("p") == 2 and g.op(g.args(square)[0]) == "sub":
            hits.append(term)
    return hits[0] if len(hits) == 1 else None


def regressed(g: Graph) -> tuple[str, str] | None:
    """(predictions, targets) of that mean squared error."""
    term = regression_term(g)
    if term is None:
        return None
    (square,) = g.args(term)
    (error,) = g.args(square)
    return tuple(g.args(error))


def targets(g: Graph) -> list[str]:
    """Inputs the loss compares predictions with: never standardised, so that
    the metric and the predictions stay in the data's own units."""
    pair = regressed(g)
    return [pair[1]] if pair is not None and g.op(pair[1]) == "input" else []


def chosen(g: Graph) -> list[str]:
    """The spec's train.metric (one name or a list), each checked against the
    loss; else the loss's own: accuracy for a cross-entropy on labels, rmse for
    a mean squared error. The first is the one --patience and --save-best judge by."""
    wanted = g.train.get("metric")
    labels, values = classified(g), regressed(g)
    if wanted is None:
        return ["accuracy"] if labels is not None else ["rmse"] if values is not None else []
    multiclass = labels is not None and g.op(classifier_term(g)) == "cross_entropy"
    for metric in [wanted] if isinstance(wanted, str) else wanted:
        if metric in CLASSIFYING:
            ok, what = labels is not None, "a cross-entropy loss on a label input"
        elif top_k(metric) is not None:
            ok, what = multiclass, "a cross_entropy loss on a label input (top-k needs classes to rank)"
        elif metric == "perplexity":
            ok, what = g.loss is not None and g.op(g.loss) == "cross_entropy", "a cross_entropy loss"
        else:
            ok, what = values is not None, "an mse loss (mean((pred - target) ** 2))"
        if not ok:
            raise SpecError(f"metric {metric} needs {what}", node="train.metric", source=g.source)
    return [wanted] if isinstance(wanted, str) else list(dict.fromkeys(wanted))


def classes(g: Graph) -> int:
    """How many classes the classifier's scores rank (2 for a binary one)."""
    term = classifier_term(g)
    return int(g.shape(g.args(term)[0])[-1]) if g.op(term) == "cross_entropy" else 2


def sum_count(g: Graph, metric: str) -> int:
    """How many sums evaluate() returns for the metric: macro-F1's are each
    class's true positives, false positives and false negatives."""
    return 0 if metric == "perplexity" else 3 * classes(g) if metric == "macro_f1" else 1


def add_error_sums(g: Graph, metrics: list[str]) -> None:
    """For error metrics, results of ``g`` summing the squared (mse, rmse) or
    absolute (mae) errors over the batch: ``squared_error_sum``, ``abs_error_sum``."""
    kinds = {"abs" if m == "mae" else "squared" for m in metrics if m in ERRORS}
    if not kinds:
        return
    pred, target = regressed(g)
    error = apply(g, "sub", [pred, target])
    for kind in sorted(kinds):
        each = apply(g, "abs", [error]) if kind == "abs" else apply(g, "pow", [error], {"p": 2.0})
        total = apply(g, "sum", [each])
        renamed = {}
        for temp, stem in ((error, "error"), (each, f"{kind}_error"), (total, f"{kind}_error_sum")):
            if temp.startswith("~"):  # else folded into a node that has a name
                renamed[temp] = g.fresh(stem)
                g.rename({temp: renamed[temp]})
                if temp == error:
                    error = renamed[temp]
        g.results[f"{kind}_error_sum"] = renamed.get(total, total)


def scored_elements(g: Graph, metric: str | None) -> int:
    """How many elements of one example the metric averages over."""
    if metric in CLASSIFYING or (metric and top_k(metric)):
        shape = g.shape(classified(g)[1])
    elif metric in ERRORS:
        shape = g.shape(g.args(regression_term(g))[0])  # the squared error's
    else:
        return 1
    return numel(d for d in shape if not is_batch(d))
