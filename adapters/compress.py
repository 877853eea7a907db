"""Compressed copies of a network: weight rounding, quantization, pruning, distillation.

Every function takes a :class:`~nnbisim.core.model.Network` and returns a new one (float64 weights
holding the compressed values exactly), ready to be written as ONNX. Same-shape methods
(rounding, quantization, pruning with zeroed rows) keep the layer sizes, so the differential
bound engine applies; distillation and physically smaller pruning do not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from nnbisim.adapters.options import COMPRESSIONS, CompressOptions, DistillOptions
from nnbisim.core import interrupt
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network


def round_weights(net: Network, dtype: str = "float16") -> Network:
    """Every weight and bias rounded to ``dtype`` (e.g. float16) and back to float64."""
    np_type = np.dtype(dtype)
    return Network.from_weights(
        [layer.weight.astype(np_type).astype(np.float64) for layer in net.layers],
        [layer.bias.astype(np_type).astype(np.float64) for layer in net.layers],
        net.input_shape, name=f"{net.name}-{dtype}")


def perturb_weights(net: Network, sigma: float, seed: int = 0) -> Network:
    """Every weight and bias plus independent N(0, sigma^2) noise (seeded)."""
    if not (np.isfinite(sigma) and sigma >= 0):
        raise InputError(f"--sigma {sigma}: give a standard deviation >= 0")
    rng = np.random.default_rng(seed)
    return Network.from_weights(
        [layer.weight + rng.normal(0.0, sigma, layer.weight.shape) for layer in net.layers],
        [layer.bias + rng.normal(0.0, sigma, layer.bias.shape) for layer in net.layers],
        net.input_shape, name=f"{net.name}-perturbed{sigma:g}")


def quantize_weights(net: Network, bits: int = 8, per_channel: bool = False) -> Network:
    """Symmetric integer quantization of the weights: ``W = s * q`` with ``q`` integers in
    ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` and ``s = max |W| / (2^(b-1) - 1)`` per tensor or per
    output channel (row); biases stay float (as in int8 inference, where they are int32)."""
    if not 2 <= bits <= 16:
        raise InputError(f"quantization needs 2 to 16 bits, got {bits}")
    top = 2 ** (bits - 1) - 1
    weights = []
    for layer in net.layers:
        w = layer.weight
        mag = np.abs(w).max(axis=1, keepdims=True) if per_channel else np.abs(w).max()
        scale = np.where(mag > 0, mag / top, 1.0)
        weights.append(np.clip(np.round(w / scale), -top, top) * scale)
    kind = "per-channel" if per_channel else "per-tensor"
    return Network.from_weights(weights, [layer.bias for layer in net.layers], net.input_shape,
                                name=f"{net.name}-int{bits}-{kind}")


def _neuron_scores(net: Network) -> list[np.ndarray]:
    """Magnitude of each hidden neuron: the norm of its incoming row times its outgoing
    column (how much it can carry)."""
    scores = []
    for k in range(net.depth):
        w_in, w_out = net.layers[k].weight, net.layers[k + 1].weight
        scores.append(np.linalg.norm(w_in, axis=1) * np.linalg.norm(w_out, axis=0))
    return scores


def prune_neurons(net: Network, fraction: float, remove: bool = False) -> Network:
    """Magnitude pruning of hidden neurons: in every hidden layer the ``fraction`` of neurons
    with the smallest :func:`_neuron_scores` are cut. With ``remove`` the network becomes
    physically smaller; otherwise their rows, biases and outgoing columns are zeroed and the
    layer sizes stay (as in VNN-COMP 2026's pruned ACAS Xu copies)."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"the pruned fraction must be in [0, 1), got {fraction}")
    weights = [layer.weight.copy() for layer in net.layers]
    biases = [layer.bias.copy() for layer in net.layers]
    keep_masks = []
    for k, score in enumerate(_neuron_scores(net)):
        cut = int(round(fraction * len(score)))
        gone = np.argsort(score, kind="stable")[:cut]
        keep = np.ones(len(score), bool)
        keep[gone] = False
        keep_masks.append(keep)
        weights[k][gone], biases[k][gone] = 0.0, 0.0
        weights[k + 1][:, gone] = 0.0
    if remove:
        for k, keep in enumerate(keep_masks):
            weights[k], biases[k] = weights[k][keep], biases[k][keep]
            weights[k + 1] = weights[k + 1][:, keep]
    how = "removed" if remove else "zeroed"
    return Network.from_weights(weights, biases, net.input_shape,
                                name=f"{net.name}-pruned{round(100 * fraction)}-{how}")


def prune_weights(net: Network, fraction: float) -> Network:
    """Unstructured magnitude pruning: per layer the ``fraction`` of weights of smallest
    magnitude set to 0 (same shape)."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"the pruned fraction must be in [0, 1), got {fraction}")
    weights = []
    for layer in net.layers:
        w = layer.weight.copy()
        cut = int(round(fraction * w.size))
        if cut:
            w.flat[np.argsort(np.abs(w), axis=None, kind="stable")[:cut]] = 0.0
        weights.append(w)
    return Network.from_weights(weights, [layer.bias for layer in net.layers], net.input_shape,
                                name=f"{net.name}-sparse{round(100 * fraction)}")


def _train(x: np.ndarray, y: np.ndarray, sizes: list[int], opts: DistillOptions
           ) -> list[torch.nn.Linear]:
    """A ReLU network of layer ``sizes`` fitted to ``(x, y)`` by Adam, seeded; its layers."""
    gen = torch.Generator().manual_seed(opts.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: threads only add overhead
    try:
        layers: list[torch.nn.Module] = []
        for k in range(len(sizes) - 1):
            lin = torch.nn.Linear(sizes[k], sizes[k + 1]).double()
            bound = 1.0 / np.sqrt(sizes[k])
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
            layers += [lin, torch.nn.ReLU()] if k < len(sizes) - 2 else [lin]
        model = torch.nn.Sequential(*layers)
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        opt = torch.optim.Adam(model.parameters(), lr=opts.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, opts.steps)
        stop = None if opts.time_limit is None else time.perf_counter() + opts.time_limit
        for _ in range(opts.steps):
            if interrupt.requested() or (stop is not None and time.perf_counter() > stop):
                break
            idx = (torch.randint(len(xt), (opts.batch,), generator=gen)
                   if opts.batch < len(xt) else slice(None))
            opt.zero_grad()
            loss = torch.mean((model(xt[idx]) - yt[idx]) ** 2)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return [m for m in model if isinstance(m, torch.nn.Linear)]


def distill(net: Network, lower: Sequence[float] | np.ndarray,
            upper: Sequence[float] | np.ndarray, options: DistillOptions = DistillOptions(),
            name: str | None = None) -> Network:
    """A small ReLU network trained to imitate ``net`` on a region: uniform samples of the box
    ``[lower, upper]`` (or of each box of a (B, n) stack, equally), MSE on ``net``'s outputs,
    Adam with a cosine schedule, seeded. Inputs and outputs are standardised for training and
    the scalings folded into the first and last layers, so the result takes raw inputs."""
    lo, hi = np.atleast_2d(np.asarray(lower, np.float64)), np.atleast_2d(np.asarray(upper,
                                                                                      np.float64))
    hidden = tuple(options.hidden)
    if lo.shape != hi.shape or lo.shape[1] != net.in_size or np.any(lo > hi):
        raise InputError(f"distillation needs boxes of {net.in_size} lower <= upper values")
    if not hidden or min(hidden) < 1:
        raise InputError(f"hidden layer sizes must be positive, got {hidden}")
    rng = np.random.default_rng(options.seed)
    per = max(1, options.samples // len(lo))
    x = np.concatenate([rng.uniform(a, b, size=(per, net.in_size)) for a, b in zip(lo, hi,
                                                                                 strict=True)])
    y = net.forward(x)
    centre, radius = (lo.min(0) + hi.max(0)) / 2, np.maximum((hi.max(0) - lo.min(0)) / 2, 1e-12)
    mean, std = y.mean(0), np.maximum(y.std(0), 1e-12)
    linears = _train((x - centre) / radius, (y - mean) / std,
                     [net.in_size, *hidden, net.out_size], options)
    ws = [m.weight.detach().numpy().copy() for m in linears]
    bs = [m.bias.detach().numpy().copy() for m in linears]
    ws[0] = ws[0] / radius
    bs[0] = bs[0] - ws[0] @ centre
    ws[-1], bs[-1] = ws[-1] * std[:, None], bs[-1] * std + mean
    label = "x".join(str(h) for h in hidden)
    return Network.from_weights(ws, bs, net.input_shape,
                                name=name or f"{net.name}-distilled{label}")


def compress(net: Network, method: str, lower: np.ndarray | None = None,
             upper: np.ndarray | None = None, options: CompressOptions = CompressOptions()
             ) -> Network:
    """N1 compressed by ``method`` (:data:`~nnbisim.adapters.options.COMPRESSIONS`):
    ``distill`` (on the boxes ``lower``/``upper``, (B, n)), ``prune``, ``float16``, ``int8``
    or ``int8-channel`` (per-channel scales), ``perturb`` (noise of ``options.sigma``)."""
    if method == "distill":
        if lower is None or upper is None:
            raise InputError("distillation needs the region: give its boxes")
        return distill(net, lower, upper, options.distill)
    if method == "prune":
        return prune_neurons(net, options.fraction, remove=options.remove)
    if method == "float16":
        return round_weights(net)
    if method in ("int8", "int8-channel"):
        return quantize_weights(net, 8, per_channel=method == "int8-channel")
    if method == "perturb":
        return perturb_weights(net, options.sigma, options.distill.seed)
    raise InputError(f"unknown compression {method!r}; use one of {', '.join(COMPRESSIONS)}")
