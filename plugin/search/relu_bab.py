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

from nnbisim.bounds.crown import (
    BoundResult,
    Branch,
    CrownOptions,
    TorchNet,
    crown_bounds,
    prepare,
)
from nnbisim.bounds.crown_relax import Tensorish
from nnbisim.core import interrupt
from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.search.stop import StopReason, gap_closed

log = logging.getLogger(__name__)

Progress = Callable[[float, int], None]  # (current sound upper bound, sub-problems bounded)


@dataclass(frozen=True)
class ReluBabOptions:
    """How :func:`relu_bab_max` searches: it stops when ``upper - value <= max(abs_gap,
    rel_gap * |value|)``, after ``time_budget`` seconds or ``max_nodes`` sub-problems; ``batch``
    sub-problems are bounded per call; ``alpha`` also optimises the ReLU slopes (``iters`` Adam
    steps each, which beta always uses); ``samples`` random points give a first value."""

    rel_gap: float = 0.01
    abs_gap: float = 1e-9
    time_budget: float = 10.0
    batch: int = 64
    max_nodes: int = 100_000
    alpha: bool = False
    iters: int = 20
    samples: int = 256
    device: str = "cpu"


@dataclass(frozen=True)
class BabResult:
    """Outcome of one maximisation: ``max_x c @ N(x) <= upper`` (a proof).

    ``value`` is the best known value (the caller's ``witness_value`` or a point sampled here,
    then ``x`` is that point, evaluated in float64); ``nodes`` the sub-problems bounded;
    ``reason``: why it stopped (GAP, EXHAUSTED, BUDGET, MAX_NODES or INTERRUPTED).
    """

    upper: float
    value: float
    x: np.ndarray | None
    nodes: int
    seconds: float
    reason: StopReason

    @property
    def complete(self) -> bool:
        """Did the search finish (gap closed or nothing left), rather than being cut short?"""
        return self.reason.complete


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
        opts = CrownOptions(alpha=self.alpha, beta=True, alpha_iters=self.iters, sides="upper",
                            return_layers=True, device=dev)
        res = crown_bounds(self.net, self.lower.expand(n, -1), self.upper.expand(n, -1), self.c,
                           opts, branch=Branch(parts or None, start))
        up = torch.where(res.infeasible, -torch.inf, res.hi[:, 0])
        if not parts:
            return up.cpu().numpy(), np.full(n, -1), None
        return up.cpu().numpy(), _branching(res, parts), _warm(res, n, sizes)


def _branching(res: BoundResult, parts: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Per sub-problem the free unstable neuron of largest BaBSR score (flat index; -1: none)."""
    scores = []
    for (lo, hi), coef, s in zip(res.layers, res.coefficients, parts, strict=True):
        free = (lo < 0) & (hi > 0) & (s == 0)
        gap = -lo * hi / torch.where(free, hi - lo, 1.0)
        scores.append(torch.where(free, (coef[:, 0].abs() + 1e-12) * gap, -torch.inf))
    best, index = torch.cat(scores, dim=1).max(dim=1)
    return torch.where(torch.isfinite(best), index, -1).cpu().numpy()


def _warm(res: BoundResult, n: int, sizes: list[int]) -> np.ndarray:
    """The optimised slopes and multipliers ``(N, 2, H)`` as float32, zeros where absent."""
    dev = res.hi.device
    found = [[torch.zeros(n, w, dtype=torch.float64, device=dev) if p is None else p[:, 0]
              for p, w in zip(ps or [None] * len(sizes), sizes, strict=True)]
             for ps in (res.alphas, res.betas)]
    params = torch.stack([torch.cat(f, dim=1) for f in found], dim=1)
    return params.to(torch.float32).cpu().numpy()


def _sample(problem: _Problem, rng: np.random.Generator, samples: int
            ) -> tuple[float, np.ndarray]:
    """Best float64 value of ``c @ N(x)`` among the box centre and random points."""
    lo, hi = problem.lower, problem.upper
    u = torch.as_tensor(rng.uniform(size=(samples, lo.shape[1])), device=lo.device)
    xs = torch.cat([(lo + hi) / 2, lo + (hi - lo) * u])
    vals = problem.net.forward(xs) @ problem.c[0]
    k = int(torch.argmax(vals))
    return float(vals[k]), xs[k].cpu().numpy()


def _open_nan(bound: np.ndarray) -> np.ndarray:
    """Upper bounds with NaN read as +inf: an undefined bound leaves its sub-problem open."""
    bound = np.asarray(bound, np.float64)
    return np.where(np.isnan(bound), np.inf, bound)


class _Frontier:
    """The open sub-problems (a heap by bound), the bounds of parents being split, the best
    bound among leaves and the best value: their largest bound is sound at every moment."""

    def __init__(self, value: float) -> None:
        # (-upper, tie, splits, branch, warm-start parameters)
        self.heap: list[tuple[float, int, np.ndarray, int, np.ndarray | None]] = []
        self.pending: list[float] = []  # bounds of parents taken off the heap, children not in
        self.leaves, self.value, self.tie = -np.inf, value, itertools.count()

    def upper(self) -> float:
        return max([self.value, self.leaves, *self.pending, *(-e[0] for e in self.heap[:1])])

    def add(self, splits: np.ndarray, bounded: tuple, parent_up: np.ndarray) -> None:
        """Put the splittable sub-problems that can still beat the value on the heap (a
        child's bound is also bounded by its parent's: its region is smaller); those with
        nothing left to split stay as they are, counted in ``leaves``."""
        up, branch, params = bounded
        # a NaN bound proves nothing: it is +inf (open), capped by the parent's bound
        up = np.minimum(_open_nan(up), _open_nan(parent_up))
        for k in np.flatnonzero((up > self.value) & (branch >= 0)):
            warm = None if params is None else params[k]
            heapq.heappush(self.heap, (-float(up[k]), next(self.tie), splits[k], int(branch[k]),
                                       warm))
        done = (branch < 0) & (up > self.value)
        if done.any():
            self.leaves = max(self.leaves, float(up[done].max()))
        self.pending = []

    def children(self, batch: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The best ``batch // 2`` sub-problems off the heap, each split in two on its branching
        neuron: the children's splits, warm starts and parents' bounds."""
        parents = []
        while self.heap and len(parents) < max(batch // 2, 1):
            self.pending.append(-self.heap[0][0])  # covered before it leaves the heap
            parents.append(heapq.heappop(self.heap))
        children = np.repeat(np.stack([p[2] for p in parents]), 2, axis=0)
        rows = np.arange(len(parents))
        idx = np.array([p[3] for p in parents])
        children[2 * rows, idx] = 1
        children[2 * rows + 1, idx] = -1
        warm = (None if parents[0][4] is None
                else np.repeat(np.stack([p[4] for p in parents]), 2, axis=0))
        return children, warm, np.repeat(np.array(self.pending), 2)


def _problem(net: Network | TorchNet, lower: Tensorish, upper: Tensorish, c: Tensorish,
             options: ReluBabOptions) -> _Problem:
    tn = prepare(net, options.device)
    xl = torch.as_tensor(lower, dtype=torch.float64).to(tn.device).reshape(1, -1)
    xu = torch.as_tensor(upper, dtype=torch.float64).to(tn.device).reshape(1, -1)
    cv = torch.as_tensor(c, dtype=torch.float64).to(tn.device).reshape(1, -1)
    if cv.shape[1] != tn.out_size:
        raise ShapeMismatchError(
            f"c has {cv.shape[1]} entries but the network has {tn.out_size} outputs: give one "
            "weight per output")
    return _Problem(tn, xl, xu, cv, options.alpha, options.iters)


def _stop(front: _Frontier, nodes: int, elapsed: float, opts: ReluBabOptions
          ) -> StopReason | None:
    if gap_closed(front.value, front.upper(), opts.rel_gap, opts.abs_gap):
        return StopReason.GAP
    if not front.heap:
        return StopReason.EXHAUSTED
    if nodes >= opts.max_nodes:
        return StopReason.MAX_NODES
    if elapsed >= opts.time_budget:
        return StopReason.BUDGET
    if interrupt.requested():
        return StopReason.INTERRUPTED
    return None


def relu_bab_max(net: Network | TorchNet, lower: Tensorish, upper: Tensorish, c: Tensorish,
                 options: ReluBabOptions = ReluBabOptions(), *,
                 witness_value: float = -np.inf, progress: Progress | None = None) -> BabResult:
    """Certify an upper bound of ``max_{lower <= x <= upper} c @ net(x)`` by ReLU splitting.

    Stops as :class:`ReluBabOptions` says (``value``: the larger of ``witness_value`` and what
    the root's sampling found), when nothing is left to split, or on Ctrl-C (between batches); the
    returned ``upper`` is sound in every case. ``progress(upper, nodes)`` is called after every
    batch.
    """
    start = time.perf_counter()
    problem = _problem(net, lower, upper, c, options)
    front = _Frontier(float(witness_value))
    best_x, nodes, reason = None, 0, StopReason.INTERRUPTED
    with interrupt.deferred():  # Ctrl-C is answered between batches, where the state is whole
        root = np.zeros((1, sum(problem.net.hidden_sizes)), dtype=np.int8)
        front.pending = [np.inf]
        sampled, x = _sample(problem, np.random.default_rng(0), options.samples)
        if sampled > front.value:
            front.value, best_x = sampled, x
        front.add(root, problem.bound(root, None), np.array([np.inf]))
        nodes = 1
        while True:
            if progress is not None:
                progress(front.upper(), nodes)
            stop = _stop(front, nodes, time.perf_counter() - start, options)
            if stop is not None:
                reason = stop
                break
            children, warm, parent_up = front.children(options.batch)
            front.add(children, problem.bound(children, warm), parent_up)
            nodes += len(children)
    bound = front.upper()
    seconds = time.perf_counter() - start
    log.info("relu bab: upper %.6g, value %.6g, %d nodes, %.1f s, %s", bound, front.value, nodes,
             seconds, reason)
    return BabResult(bound, front.value, best_x, nodes, seconds, reason)
