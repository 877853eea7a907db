"""Branch and bound by ReLU splitting: certify an upper bound of ``max_{x in box} c @ N(x)``.

For wide inputs (MNIST's 784) splitting the input box is hopeless; splitting unstable ReLUs
into their active and inactive phases is not. Each sub-problem is a set of split signs, bounded
by :func:`nnbisim.bounds.crown.crown_bounds` with the split multipliers optimised (beta-CROWN), in
batches. Best first: the open sub-problems with the largest upper bounds are split on the
unstable neuron with the largest score ``|coefficient in the final back-substitution| *
-l u / (u - l)`` (the intercept of its chord, as in BaBSR). Sub-problems whose bound cannot beat
the best known value, and infeasible ones, are dropped.

The largest bound among open sub-problems (and the best known value) is a sound upper bound of
the maximum at every moment, so the search can stop on a gap, a time budget, a node limit or a
keyboard interrupt and still report it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.bounds.crown import Tensorish, TorchNet, crown_bounds, prepare
from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Network

log = logging.getLogger(__name__)

Progress = Callable[[float, int], None]  # (current sound upper bound, sub-problems bounded)
SAMPLES = 256  # random points evaluated at the root for a first witness value


@dataclass(frozen=True)
class BabResult:
    """Outcome of one maximisation: ``max_x c @ N(x) <= upper`` (a proof).

    ``value`` is the best known value (the caller's ``witness_value`` or a point sampled here,
    then ``x`` is that point, evaluated in float64); ``nodes`` the sub-problems bounded;
    ``reason``: ``gap``, ``exhausted`` (nothing left to split), ``budget``, ``max-nodes`` or
    ``interrupted``.
    """

    upper: float
    value: float
    x: np.ndarray | None
    nodes: int
    seconds: float
    reason: str

    @property
    def complete(self) -> bool:
        """Did the search finish (gap closed or nothing left), rather than being cut short?"""
        return self.reason in ("gap", "exhausted")


def _gap_closed(value: float, upper: float, rel_gap: float, abs_gap: float) -> bool:
    return upper - value <= max(abs_gap, rel_gap * abs(value))


@dataclass(frozen=True)
class _Problem:
    """The fixed part of one search: network, box, objective and bounding options."""

    net: TorchNet
    lower: torch.Tensor  # (1, n)
    upper: torch.Tensor
    c: torch.Tensor  # (1, m)
    alpha: bool
    iters: int

    def bound(self, splits: np.ndarray, warm: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Bound the sub-problems ``splits`` ``(N, H)``: their upper bounds ``(N,)`` (``-inf``
        when infeasible), the neuron (flat index) to split next in each (``-1``: none) and the
        optimised slopes and multipliers ``(N, 2, H)`` (float32, to warm-start children)."""
        n, sizes = len(splits), list(self.net.hidden_sizes)
        dev = self.net.device
        signs = torch.as_tensor(splits, device=dev)
        parts = torch.split(signs, sizes, dim=1) if splits.size else ()
        start = None
        if warm is not None and parts:
            w = torch.as_tensor(warm, dtype=torch.float64, device=dev).unsqueeze(2)
            start = tuple(list(torch.split(w[:, i], sizes, dim=2)) for i in (0, 1))
        res = crown_bounds(self.net, self.lower.expand(n, -1), self.upper.expand(n, -1), self.c,
                           alpha=self.alpha, beta=True, alpha_iters=self.iters,
                           splits=parts or None, sides="upper", return_layers=True,
                           warm_start=start, device=dev)
        up = torch.where(res.infeasible, -torch.inf, res.hi[:, 0])
        if not parts:
            return up.cpu().numpy(), np.full(n, -1), None
        scores = []
        for (lo, hi), coef, s in zip(res.layers, res.coefficients, parts, strict=True):
            free = (lo < 0) & (hi > 0) & (s == 0)
            gap = -lo * hi / torch.where(free, hi - lo, 1.0)
            scores.append(torch.where(free, (coef[:, 0].abs() + 1e-12) * gap, -torch.inf))
        best, index = torch.cat(scores, dim=1).max(dim=1)
        branch = torch.where(torch.isfinite(best), index, -1)
        found = [[torch.zeros(n, w, dtype=torch.float64, device=dev) if p is None else p[:, 0]
                  for p, w in zip(ps or [None] * len(sizes), sizes, strict=True)]
                 for ps in (res.alphas, res.betas)]
        params = torch.stack([torch.cat(f, dim=1) for f in found], dim=1)
        return up.cpu().numpy(), branch.cpu().numpy(), params.to(torch.float32).cpu().numpy()


def _sample(problem: _Problem, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Best float64 value of ``c @ N(x)`` among the box centre and random points."""
    lo, hi = problem.lower, problem.upper
    u = torch.as_tensor(rng.uniform(size=(SAMPLES, lo.shape[1])), device=lo.device)
    xs = torch.cat([(lo + hi) / 2, lo + (hi - lo) * u])
    vals = problem.net.forward(xs) @ problem.c[0]
    k = int(torch.argmax(vals))
    return float(vals[k]), xs[k].cpu().numpy()


def relu_bab_max(net: Network | TorchNet, lower: Tensorish, upper: Tensorish, c: Tensorish, *,
                 witness_value: float = -np.inf, rel_gap: float = 0.01, abs_gap: float = 1e-9,
                 time_budget: float = 10.0, batch: int = 64, max_nodes: int = 100_000,
                 alpha: bool = False, iters: int = 20, progress: Progress | None = None,
                 device: str | torch.device = "cpu") -> BabResult:
    """Certify an upper bound of ``max_{lower <= x <= upper} c @ net(x)`` by ReLU splitting.

    Stops when ``upper - value <= max(abs_gap, rel_gap * |value|)`` (``value``: the larger of
    ``witness_value`` and what the root's sampling found), when nothing is left to split, after
    ``time_budget`` seconds or ``max_nodes`` sub-problems, or on ``KeyboardInterrupt``; the
    returned ``upper`` is sound in every case. ``batch`` sub-problems are bounded per call;
    ``alpha`` also optimises the ReLU slopes (``iters`` Adam steps each, which beta always uses);
    ``progress(upper, nodes)`` is called after every batch.
    """
    start = time.perf_counter()
    tn = prepare(net, device)
    xl = torch.as_tensor(lower, dtype=torch.float64).to(tn.device).reshape(1, -1)
    xu = torch.as_tensor(upper, dtype=torch.float64).to(tn.device).reshape(1, -1)
    cv = torch.as_tensor(c, dtype=torch.float64).to(tn.device).reshape(1, -1)
    if cv.shape[1] != tn.out_size:
        raise ShapeMismatchError(
            f"c has {cv.shape[1]} entries but the network has {tn.out_size} outputs: give one "
            "weight per output")
    problem = _Problem(tn, xl, xu, cv, alpha, iters)
    value, best_x = float(witness_value), None
    # (-upper, tie, splits, branch, warm-start parameters)
    open_: list[tuple[float, int, np.ndarray, int, np.ndarray | None]] = []
    pending: list[float] = []  # bounds of parents taken off the heap, children not yet in
    leaves, nodes, reason, tie = -np.inf, 0, "interrupted", itertools.count()

    def global_upper() -> float:
        return max([value, leaves, *pending, *(-e[0] for e in open_[:1])])

    try:
        root = np.zeros((1, sum(tn.hidden_sizes)), dtype=np.int8)
        pending = [np.inf]
        sampled, x = _sample(problem, np.random.default_rng(0))
        if sampled > value:
            value, best_x = sampled, x
        up, branch, params = problem.bound(root, None)
        nodes = 1
        _push(open_, tie, root, up, branch, params, np.array([np.inf]), value)
        leaves = max(leaves, _leaf_max(up, branch, value))
        pending = []
        while True:
            bound = global_upper()
            if progress is not None:
                progress(bound, nodes)
            if _gap_closed(value, bound, rel_gap, abs_gap):
                reason = "gap"
                break
            if not open_:
                reason = "exhausted"
                break
            if nodes >= max_nodes:
                reason = "max-nodes"
                break
            if time.perf_counter() - start >= time_budget:
                reason = "budget"
                break
            parents = []
            while open_ and len(parents) < max(batch // 2, 1):
                pending.append(-open_[0][0])  # covered before it leaves the heap
                parents.append(heapq.heappop(open_))
            children = np.repeat(np.stack([p[2] for p in parents]), 2, axis=0)
            rows = np.arange(len(parents))
            idx = np.array([p[3] for p in parents])
            children[2 * rows, idx] = 1
            children[2 * rows + 1, idx] = -1
            warm = (None if parents[0][4] is None
                    else np.repeat(np.stack([p[4] for p in parents]), 2, axis=0))
            up, branch, params = problem.bound(children, warm)
            nodes += len(children)
            parent_up = np.repeat(np.array(pending), 2)
            _push(open_, tie, children, up, branch, params, parent_up, value)
            leaves = max(leaves, _leaf_max(np.minimum(up, parent_up), branch, value))
            pending = []
    except KeyboardInterrupt:
        reason = "interrupted"
    bound = global_upper()
    seconds = time.perf_counter() - start
    log.info("relu bab: upper %.6g, value %.6g, %d nodes, %.1f s, %s", bound, value, nodes,
             seconds, reason)
    return BabResult(bound, value, best_x, nodes, seconds, reason)


def _push(heap: list, tie: itertools.count, splits: np.ndarray, up: np.ndarray,
          branch: np.ndarray, params: np.ndarray | None, parent_up: np.ndarray, value: float
          ) -> None:
    """Put the splittable sub-problems that can still beat ``value`` on the heap (a child's
    bound is also bounded by its parent's: its region is smaller)."""
    up = np.minimum(up, parent_up)
    for k in np.flatnonzero((up > value) & (branch >= 0)):
        warm = None if params is None else params[k]
        heapq.heappush(heap, (-float(up[k]), next(tie), splits[k], int(branch[k]), warm))


def _leaf_max(up: np.ndarray, branch: np.ndarray, value: float) -> float:
    """Largest bound among sub-problems with nothing left to split (they stay as they are)."""
    done = (branch < 0) & (up > value)
    return float(up[done].max()) if done.any() else -np.inf
