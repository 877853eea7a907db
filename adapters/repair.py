"""Quantization-aware retraining of an int8 network (the repair loop's training step).

:class:`QATNet` holds a :class:`~nnbisim.core.quant.QuantizedNetwork`'s weights as float parameters
and runs the int8 model's forward with *fake quantization*: weights rounded per output channel
to symmetric int8 (scale ``max |w| / 127.5``, PyTorch's per-channel symmetric qint8), activations
rounded and clamped with their layer's uint8 scale and zero point; gradients pass the rounding
straight through (inside the clamp range). :meth:`QATNet.export` gives the int8 network back,
so a retrained network is always a real int8 network, evaluated exactly by
:meth:`QuantizedNetwork.forward`.

Activation quantization parameters are either kept as they are (``qparams="keep"``) or set from
the ranges seen on the training data (``"calibrate"``, what PyTorch's QAT observers do: uint8
affine, ``scale = (max - min) / 255``, zero point ``round(-min / scale)``; hidden layers start at
0 after ReLU; the input range is the input domain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.core.errors import InputError
from nnbisim.core.quant import QuantizedLayer, QuantizedNetwork, Quantizer


def _fake(x: torch.Tensor, q: Quantizer) -> torch.Tensor:
    """Round and clamp to ``q``'s grid, straight-through gradient inside the range."""
    lo, hi = (q.qmin - q.zero_point) * q.scale, (q.qmax - q.zero_point) * q.scale
    xc = torch.clamp(x, lo, hi)
    return xc + (torch.round(xc / q.scale) * q.scale - xc).detach()


def _weight_scale(w: torch.Tensor) -> torch.Tensor:
    return torch.clamp(w.detach().abs().amax(dim=1) / 127.5, min=1e-12)


def _fake_weight(w: torch.Tensor) -> torch.Tensor:
    s = _weight_scale(w)[:, None]
    wq = torch.clamp(torch.round(w / s), -128, 127) * s
    return w + (wq - w).detach()


def calibrated(lo: float, hi: float, relu: bool) -> Quantizer:
    """uint8 affine quantizer covering ``[lo, hi]`` (``[0, hi]`` after ReLU)."""
    lo = 0.0 if relu else min(lo, 0.0)
    hi = max(hi, lo + 1e-6, 0.0)
    scale = (hi - lo) / 255.0
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    return Quantizer(float(np.float32(scale)), zero, 0, 255)


@dataclass
class TrainLog:
    epochs: int
    loss: list[float]


class QATNet(torch.nn.Module):
    """The int8 network as a trainable module (see the module doc)."""

    def __init__(self, net: QuantizedNetwork) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(q.weight, dtype=torch.float32)) for q in net.layers])
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(q.bias, dtype=torch.float32)) for q in net.layers])
        self.input_q = net.input
        self.out_q = [q.out for q in net.layers]
        self.input_shape, self.name = net.input_shape, net.name

    def forward(self, x: torch.Tensor, fake: bool = True) -> torch.Tensor:
        h = _fake(x, self.input_q) if fake else x
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ (_fake_weight(w) if fake else w).T + b
            if k < last:
                h = torch.relu(h)
            if fake and self.out_q[k] is not None:
                h = _fake(h, self.out_q[k])
        return h

    def calibrate(self, x: torch.Tensor, domain: tuple[float, float]) -> None:
        """Set the activation quantizers from the ranges on ``x`` (float forward)."""
        self.input_q = calibrated(domain[0], domain[1], relu=False)
        with torch.no_grad():
            h = x
            last = len(self.weights) - 1
            for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = h @ w.T + b
                if k < last:
                    h = torch.relu(h)
                if self.out_q[k] is not None:
                    # outputs get 10% headroom: retraining moves them
                    lo, hi = float(h.min()), float(h.max())
                    pad = 0.1 * (hi - lo) if k == last else 0.0
                    self.out_q[k] = calibrated(lo - pad, hi + pad, relu=k < last)

    def export(self) -> QuantizedNetwork:
        layers = []
        for w, b, out in zip(self.weights, self.biases, self.out_q, strict=True):
            wd = w.detach().double()
            s = _weight_scale(w.detach()).double()
            # the scale stored is the one the codes were rounded with, as float32 (as PyTorch)
            s = s.float().double()
            codes = torch.clamp(torch.round(wd / s[:, None]), -128, 127)
            layers.append(QuantizedLayer(codes.numpy(), s.numpy(), np.zeros(len(s)),
                                         b.detach().double().numpy(), out))
        return QuantizedNetwork(self.input_q, tuple(layers), self.input_shape, self.name)


def retrain(model: QATNet, x: np.ndarray, y: np.ndarray, *, epochs: int = 3,
            lr: float = 1e-3, batch: int = 128, seed: int = 0) -> TrainLog:
    """Minimise the mean squared error to ``y`` with fake quantization (Adam)."""
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"retraining needs matching, non-empty inputs and targets (got "
                         f"{len(x)} and {len(y)})")
    gen = torch.Generator().manual_seed(seed)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for s in range(0, len(xt), batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss = torch.mean((model(xt[idx]) - yt[idx]) ** 2)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(xt))
    return TrainLog(epochs, losses)
