"""Witnesses: real inputs where two networks differ, found by attack and replayed on the files.

For every output ``i`` and sign ``s`` the search maximises ``s * (N1(x) - N2(x))_i`` over each
input box: random samples, the box centre and (in low dimension) its corners seed a batched
hill climb along the gradient on the float64 dense model from the best of them. The best candidates
are then replayed with onnxruntime on the two *original* ONNX files; only replayed values count
as lower bounds of eps.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core import interrupt
from nnbisim.core.model import Network
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


def climb(evaluate: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, lo: torch.Tensor,
          hi: torch.Tensor, steps: int, deadline: float | None = None) -> torch.Tensor:
    """Hill climbing on ``evaluate`` (points (..., n_in) -> values (...), differentiable) from
    start points ``x``, each kept in its box ``[lo, hi]`` (broadcastable to x): each step moves
    ``alpha * width`` along the gradient scaled to unit largest component, and is kept only
    where it improves; ``alpha`` shrinks geometrically from 1/10 to 1e-6 (ReLU networks are
    piecewise linear with many small pieces, so long steps find the right piece and short ones
    its best corner). Returns the end points (same shape as ``x``); past ``deadline`` (a
    ``time.perf_counter()`` value) or on a Ctrl-C request, those reached so far.
    """
    width = (hi - lo).clamp_min(0)
    x = x.clone()
    for k, alpha in enumerate(np.geomspace(0.1, 1e-6, max(steps, 1))):
        if k and (interrupt.requested() or (deadline is not None
                                            and time.perf_counter() > deadline)):
            break
        xg = x.detach().requires_grad_(True)
        vals = evaluate(xg)
        (grad,) = torch.autograd.grad(vals.sum(), xg)
        scaled = grad * width
        norm = scaled.abs().amax(-1, keepdim=True).clamp_min(1e-300)
        with torch.no_grad():
            cand = torch.minimum(torch.maximum(x + alpha * width * scaled / norm, lo), hi)
            better = (evaluate(cand) > vals.detach()).unsqueeze(-1)
            x = torch.where(better, cand, x)
    return x


def difference_objectives(f1, f2, objectives: torch.Tensor
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x (K, P, n) -> objectives[k] @ (N1(x) - N2(x))`` (K, P): what the climbs maximise."""
    def evaluate(pt: torch.Tensor) -> torch.Tensor:
        return ((torch_forward(f1, pt) - torch_forward(f2, pt)) * objectives[:, None, :]).sum(-1)
    return evaluate


def polisher(n1: Network, n2: Network, inputs: InputSet, steps: int = 60
             ) -> Callable[[np.ndarray], np.ndarray]:
    """``points (P, n) -> points (2m * P, n)``: a climb for every output and sign from each
    point, inside the box of the input set that holds it (for branch and bound's best boxes)."""
    m = n1.out_size
    f1, f2 = torch_layers(n1), torch_layers(n2)
    objectives = _objectives(m)
    lows = torch.as_tensor(np.array([b.lower for b in inputs.boxes]))
    highs = torch.as_tensor(np.array([b.upper for b in inputs.boxes]))

    def polish(points: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(points, np.float64))
        inside = ((x[:, None] >= lows[None]) & (x[:, None] <= highs[None])).all(-1)
        home = inside.to(torch.int8).argmax(1)
        starts = x.unsqueeze(0).expand(len(objectives), -1, -1)
        out = climb(difference_objectives(f1, f2, objectives), starts, lows[home], highs[home],
                    steps)
        return out.reshape(-1, x.shape[-1]).numpy()
    return polish


def _objectives(m: int) -> torch.Tensor:
    return torch.as_tensor(np.array([s * np.eye(m)[i] for i in range(m) for s in (1, -1)]))


@dataclass(frozen=True)
class Climbs:
    """How hard :func:`find_witnesses` looks: ``samples`` uniform points per box (fewer for
    wide inputs), the best ``restarts`` of them per objective climbed for ``steps`` steps."""

    samples: int = 200_000
    restarts: int = 64
    steps: int = 100


def find_witnesses(
    n1: Network,
    n2: Network,
    inputs: InputSet,
    replay: Replay | None = None,
    *,
    effort: Climbs = Climbs(),
    seed: int = 0,
    deadline: float | None = None,
) -> list[Witness]:
    """The best replayed witness per output and sign, ordered ``(0,+), (0,-), (1,+), ...``.

    ``replay`` evaluates ``N1 - N2`` on the original files (onnxruntime); without it the dense
    float64 model's value is used (for networks that exist only in memory). The climbs stop
    at ``deadline`` (a ``time.perf_counter()`` value), each box's first step excepted.
    """
    m = n1.out_size
    rng = np.random.default_rng(seed)
    f1, f2 = torch_layers(n1), torch_layers(n2)
    objectives = _objectives(m)
    cand_x, cand_box = [], []
    samples = max(1024, min(effort.samples, 2_000_000 // max(inputs.dim, 1)))  # wide: fewer
    for b, box in enumerate(inputs.boxes):
        starts = _starts(f1, f2, box, objectives, samples, effort.restarts, rng)
        xs = climb(difference_objectives(f1, f2, objectives), starts, torch.tensor(box.lower),
                   torch.tensor(box.upper), effort.steps, deadline)
        xs = xs.reshape(-1, xs.shape[-1]).numpy()
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
    r1, r2 = OnnxRunner(n1_path), OnnxRunner(n2_path)
    return lambda x: r1.run(x) - r2.run(x)
