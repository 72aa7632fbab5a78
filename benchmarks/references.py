"""The five benchmark models written by hand: NumPy, PyTorch eager and JAX jit.

Each ``make_<framework>(model, params, inputs, lr)`` returns ``(step, loss)``:
``step()`` runs one training step (loss and gradients on the batch, then
``p -= lr * grad``) and ``loss()`` gives the loss of the last step, forcing
any pending work. The parameters and inputs are the same arrays the
generated code gets, so the first losses must agree.
"""

from __future__ import annotations

import numpy as np


# -- hand-written NumPy ------------------------------------------------------------------
def softmax_xent_grad(logits, labels):
    """The loss and d loss / d logits of mean softmax cross-entropy."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(np.mean(np.log(total[:, 0]) - shifted[np.arange(n), labels]))
    grad = exp / total
    grad[np.arange(n), labels] -= 1
    grad /= n
    return loss, grad


def numpy_grads(model, p, x):
    if model == "slide":
        e = p["a"] + 2 * p["b"]
        return p["c"] * e, {"a": p["c"], "b": 2 * p["c"], "c": e}
    if model == "logreg":
        z = x["x"] @ p["w"] + p["b"]
        y = x["y"]
        loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
        dz = (1 / (1 + np.exp(-z)) - y) / len(y)
        return loss, {"w": x["x"].T @ dz, "b": dz.sum()}
    if model == "mlp":
        u1 = x["x"] @ p["W1"] + p["b1"]
        h1 = np.maximum(u1, 0)
        u2 = h1 @ p["W2"] + p["b2"]
        h2 = np.maximum(u2, 0)
        loss, dlogits = softmax_xent_grad(h2 @ p["W3"] + p["b3"], x["y"])
        dh2 = (dlogits @ p["W3"].T) * (u2 > 0)
        dh1 = (dh2 @ p["W2"].T) * (u1 > 0)
        return loss, {
            "W1": x["x"].T @ dh1, "b1": dh1.sum(0), "W2": h1.T @ dh2, "b2": dh2.sum(0),
            "W3": h2.T @ dlogits, "b3": dlogits.sum(0),
        }
    if model == "nlm":
        ids = x["context_ids"]
        emb = p["C"][ids].reshape(len(ids), -1)
        a = np.tanh(emb @ p["H"] + p["d"])
        loss, dlogits = softmax_xent_grad(a @ p["U"] + p["e"], x["next_id"])
        du = (dlogits @ p["U"].T) * (1 - a * a)
        dC = np.zeros_like(p["C"])
        np.add.at(dC, ids.ravel(), (du @ p["H"].T).reshape(ids.size, -1))
        return loss, {"C": dC, "H": emb.T @ du, "d": du.sum(0), "U": a.T @ dlogits, "e": dlogits.sum(0)}
    if model == "textcnn":
        tokens = x["tokens"]
        words = p["E"][tokens]
        n, seq, emb = words.shape
        features, saved = [], []
        for width in (3, 4, 5):
            kernel = p[f"K{width}"]
            windows = np.lib.stride_tricks.sliding_window_view(words, width, axis=1)  # [n, T, emb, width]
            windows = windows.transpose(0, 1, 3, 2).reshape(n, seq - width + 1, width * emb)
            conv = windows @ kernel.reshape(width * emb, -1) + p[f"c{width}"]
            at = conv.argmax(axis=1)
            features.append(np.maximum(np.take_along_axis(conv, at[:, None], 1)[:, 0], 0))
            saved.append((windows, at, conv))
        f = np.concatenate(features, axis=1)
        loss, dlogits = softmax_xent_grad(f @ p["W"] + p["b"], x["label"])
        df = dlogits @ p["W"].T
        grads = {"W": f.T @ dlogits, "b": dlogits.sum(0)}
        dwords = np.zeros_like(words)
        rows = np.arange(n)[:, None]
        for i, (width, (windows, at, conv)) in enumerate(zip((3, 4, 5), saved)):
            maps = conv.shape[2]
            dmax = df[:, i * maps:(i + 1) * maps] * (np.take_along_axis(conv, at[:, None], 1)[:, 0] > 0)
            dconv = np.zeros_like(conv)
            dconv[rows, at, np.arange(maps)] = dmax
            kernel = p[f"K{width}"]
            grads[f"K{width}"] = np.tensordot(windows, dconv, axes=([0, 1], [0, 1])).reshape(kernel.shape)
            grads[f"c{width}"] = dmax.sum(0)
            for tap in range(width):
                dwords[:, tap:tap + conv.shape[1]] += dconv @ kernel[tap].T
        dE = np.zeros_like(p["E"])
        np.add.at(dE, tokens.ravel(), dwords.reshape(-1, emb))
        grads["E"] = dE
        return loss, grads
    raise ValueError(model)


def make_numpy(model, params, inputs, lr):
    p = {k: v.copy() for k, v in params.items()}
    last = [0.0]

    def step():
        loss, grads = numpy_grads(model, p, inputs)
        for k in p:
            p[k] -= np.asarray(lr * grads[k], p[k].dtype)
        last[0] = loss

    return step, lambda: float(last[0])


# -- PyTorch eager ------------------------------------------------------------------------
def torch_loss(model, p, x):
    import torch
    import torch.nn.functional as F

    if model == "slide":
        return p["c"] * (p["a"] + 2 * p["b"])
    if model == "logreg":
        return F.binary_cross_entropy_with_logits(x["x"] @ p["w"] + p["b"], x["y"])
    if model == "mlp":
        h1 = torch.relu(x["x"] @ p["W1"] + p["b1"])
        h2 = torch.relu(h1 @ p["W2"] + p["b2"])
        return F.cross_entropy(h2 @ p["W3"] + p["b3"], x["y"])
    if model == "nlm":
        emb = p["C"][x["context_ids"]].reshape(len(x["context_ids"]), -1)
        return F.cross_entropy(torch.tanh(emb @ p["H"] + p["d"]) @ p["U"] + p["e"], x["next_id"])
    if model == "textcnn":
        words = p["E"][x["tokens"]].transpose(1, 2)  # [n, emb, seq]
        feats = [
            torch.relu(F.conv1d(words, p[f"K{w}"].permute(2, 1, 0), p[f"c{w}"])).amax(dim=2) for w in (3, 4, 5)
        ]
        return F.cross_entropy(torch.cat(feats, 1) @ p["W"] + p["b"], x["label"])
    raise ValueError(model)


def make_torch(model, params, inputs, lr):
    import torch

    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    last = [None]

    def step():
        loss = torch_loss(model, p, x)
        loss.backward()
        with torch.no_grad():
            for t in p.values():
                t -= lr * t.grad
                t.grad = None
        last[0] = loss

    return step, lambda: float(last[0].detach())


# -- JAX jit --------------------------------------------------------------------------------
def jax_loss(model, p, x):
    import jax
    import jax.numpy as jnp

    def xent(logits, labels):
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0])

    if model == "slide":
        return p["c"] * (p["a"] + 2 * p["b"])
    if model == "logreg":
        z = x["x"] @ p["w"] + p["b"]
        return jnp.mean(jnp.maximum(z, 0) - z * x["y"] + jnp.log1p(jnp.exp(-jnp.abs(z))))
    if model == "mlp":
        h1 = jax.nn.relu(x["x"] @ p["W1"] + p["b1"])
        h2 = jax.nn.relu(h1 @ p["W2"] + p["b2"])
        return xent(h2 @ p["W3"] + p["b3"], x["y"])
    if model == "nlm":
        emb = p["C"][x["context_ids"]].reshape(x["context_ids"].shape[0], -1)
        return xent(jnp.tanh(emb @ p["H"] + p["d"]) @ p["U"] + p["e"], x["next_id"])
    if model == "textcnn":
        words = p["E"][x["tokens"]]
        feats = []
        for w in (3, 4, 5):
            conv = jax.lax.conv_general_dilated(words, p[f"K{w}"], (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
            feats.append(jax.nn.relu(conv + p[f"c{w}"]).max(axis=1))
        return xent(jnp.concatenate(feats, 1) @ p["W"] + p["b"], x["label"])
    raise ValueError(model)


def make_jax(model, params, inputs, lr):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def update(p, x):
        loss, grads = jax.value_and_grad(lambda q: jax_loss(model, q, x))(p)
        return {k: p[k] - lr * grads[k] for k in p}, loss

    state = {"p": {k: jnp.asarray(v) for k, v in params.items()}, "loss": None}
    x = {k: jnp.asarray(v) for k, v in inputs.items()}

    def step():
        state["p"], state["loss"] = update(state["p"], x)

    def loss():
        return float(state["loss"].block_until_ready())

    return step, loss
