"""Witnesses: real inputs where two networks differ, found by attack and replayed on the files.

For every output ``i`` and sign ``s`` the search maximises ``s * (N1(x) - N2(x))_i`` over each
input box: random samples, the box centre and (in low dimension) its corners seed a batched
projected-gradient ascent with random restarts on the float64 dense model. The best candidates
are then replayed with onnxruntime on the two *original* ONNX files; only replayed values count
as lower bounds of eps.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.model import Network
from nnbisim.specs.sets import Box, InputSet

log = logging.getLogger(__name__)

Replay = Callable[[np.ndarray], np.ndarray]  # (n, in) inputs -> (n, m) values of N1 - N2


@dataclass(frozen=True)
class Witness:
    """An input ``x`` (flattened) where ``sign * (N1(x) - N2(x))_index == value`` (replayed)."""

    index: int
    sign: int
    value: float
    x: np.ndarray
    box: int  # which box of the input set it lies in

    def to_json(self) -> dict:
        return {"index": self.index, "sign": self.sign, "value": self.value,
                "x": [float(v) for v in self.x], "box": self.box}


def torch_layers(net: Network, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.tensor(layer.weight, device=device), torch.tensor(layer.bias, device=device))
            for layer in net.layers]


def torch_forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
                  ) -> torch.Tensor:
    h = x
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if k < len(layers) - 1:
            h = torch.relu(h)
    return h


def _starts(f1, f2, box: Box, objectives: torch.Tensor, n: int, top: int,
            rng: np.random.Generator) -> torch.Tensor:
    """Start points per objective: the centre, the corners (low dimension) and the ``top`` best
    of ``n`` uniform samples for that objective. Shape (K, P, n_in)."""
    pts = [box.center[None], box.sample(n, rng)]
    if box.dim <= 10:
        pts.append(np.array(list(itertools.product(*zip(box.lower, box.upper, strict=True)))))
    x = torch.as_tensor(np.concatenate(pts))
    with torch.no_grad():
        vals = (torch_forward(f1, x) - torch_forward(f2, x)) @ objectives.T  # (P, K)
    best = vals.topk(min(top, len(x)), dim=0).indices.T  # (K, top)
    return x[best]


def _ascend(f1, f2, box: Box, objectives: torch.Tensor, x: torch.Tensor, steps: int
            ) -> np.ndarray:
    """PGD on ``objectives[k] @ (N1 - N2)`` from start points ``x[k]`` (K, P, n_in).

    Returns every point visited at its best, (K * P, n_in), for replay by the caller.
    """
    lo = torch.tensor(box.lower)
    hi = torch.tensor(box.upper)
    width = (hi - lo).clamp_min(0)
    best_x = x.clone()
    best_v = torch.full(x.shape[:2], -torch.inf, dtype=torch.float64)
    for step in range(steps + 1):
        x = x.detach().requires_grad_(True)
        d = torch_forward(f1, x) - torch_forward(f2, x)  # (K, P, m)
        vals = (d * objectives[:, None, :]).sum(-1)  # (K, P)
        better = vals.detach() > best_v
        best_v = torch.where(better, vals.detach(), best_v)
        best_x[better] = x.detach()[better]
        if step == steps:
            break
        (grad,) = torch.autograd.grad(vals.sum(), x)
        size = 0.25 * width * (1 - step / steps) + 1e-3 * width
        x = torch.minimum(torch.maximum(x.detach() + size * grad.sign(), lo), hi)
    return best_x.reshape(-1, x.shape[-1]).numpy()


def find_witnesses(
    n1: Network,
    n2: Network,
    inputs: InputSet,
    replay: Replay | None = None,
    *,
    samples: int = 32768,
    restarts: int = 32,
    steps: int = 50,
    seed: int = 0,
) -> list[Witness]:
    """The best replayed witness per output and sign, ordered ``(0,+), (0,-), (1,+), ...``.

    ``replay`` evaluates ``N1 - N2`` on the original files (onnxruntime); without it the dense
    float64 model's value is used (for networks that exist only in memory).
    """
    m = n1.out_size
    rng = np.random.default_rng(seed)
    f1, f2 = torch_layers(n1), torch_layers(n2)
    objectives = torch.as_tensor(np.array([s * np.eye(m)[i] for i in range(m) for s in (1, -1)]))
    cand_x, cand_box = [], []
    samples = max(1024, min(samples, 2_000_000 // max(inputs.dim, 1)))  # wide inputs: fewer
    for b, box in enumerate(inputs.boxes):
        starts = _starts(f1, f2, box, objectives, samples, restarts, rng)
        xs = _ascend(f1, f2, box, objectives, starts, steps)
        cand_x.append(xs)
        cand_box += [b] * len(xs)
    x = np.concatenate(cand_x)
    d = replay(x) if replay is not None else n1.forward(x) - n2.forward(x)
    out = []
    for i in range(m):
        for s in (1, -1):
            j = int(np.argmax(s * d[:, i]))
            out.append(Witness(i, s, float(s * d[j, i]), x[j].copy(), cand_box[j]))
    log.debug("witnesses: %s", [(w.index, w.sign, w.value) for w in out])
    return out


def onnx_replay(n1_path, n2_path) -> Replay:
    """A :data:`Replay` running the two original ONNX files in onnxruntime."""
    from nnbisim.adapters.replay import OnnxRunner

    r1, r2 = OnnxRunner(n1_path), OnnxRunner(n2_path)
    return lambda x: r1.run(x) - r2.run(x)
