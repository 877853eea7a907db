"""Sound bounds of a ReLU network over input boxes: interval propagation and (alpha-)CROWN.

Batched over boxes ``(B, n_in)``, torch float64, on any device. :func:`interval_bounds`
propagates intervals; :func:`crown_bounds` back-substitutes linear relaxations (CROWN /
DeepPoly): the chord above each unstable ReLU, a line of slope in ``[0, 1]`` below it. Hidden
layers are bounded in order; a neuron that interval (and, in low input dimension, forward linear)
bounds already prove stable keeps those bounds, the others are tightened by back-substitution to
the input. Optionally the lower slopes (alpha) and, under ReLU split constraints, multipliers of
the splits (beta, as in beta-CROWN) are optimised by projected Adam for the final rows
(:mod:`nnbisim.bounds.alpha`); any alpha in ``[0, 1]`` and beta ``>= 0`` gives a valid bound,
so optimising only tightens.

Guaranteed: ``lo <= C @ N(x) <= hi`` for every real ``x`` in the box (satisfying the split signs,
when given), where ``N`` is the real-arithmetic network whose weights are exactly the float64
numbers of the :class:`~nnbisim.core.model.Network` (float32 ONNX weights are represented
exactly). Rounding is accounted for (:mod:`nnbisim.bounds.fp`): every bound carries the outward
margin ``2 * (gamma(N) + U) * mass + TINY`` with ``N`` above twice the longest dot product plus
the additions per bound, and ``mass`` an upper bound of the sum of magnitudes of every rounded
term: ``|G_j| @ (|W_j| @ hmax_{j-1} + |b_j|)`` for each relaxed coefficient matrix ``G_j``
(``hmax`` the post-ReLU upper bounds, ``|x|``'s bound for the input), the ReLU intercept terms
and ``|A| @ max(|l|, |u|)`` over the box. That bounds the error of each dot product in any
summation order, with or without fused multiply-add (any BLAS, cuBLAS), and of the elementwise
products; the factor 2 covers the rounding of the margin itself. Forward linear bounds carry the
same kind of error terms; chord intercepts are rounded up with ``nextafter``. Inputs must be
finite (overflow gives inf bounds).

Not guaranteed: anything about a float32 evaluation such as onnxruntime's, which rounds each
layer to float32 and differs from the real network by that rounding; callers comparing with it
must account for that separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nnbisim.bounds.alpha import Focus, Tuning, focused, optimise
from nnbisim.bounds.crown_relax import (
    Collect,
    Intermediate,
    Params,
    Tensorish,
    TorchNet,
    affine_interval,
    as_box,
    backsub,
    bmv,
    intermediate,
    prepare,
)
from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Network

__all__ = ["BoundResult", "Branch", "CrownOptions", "Focus", "TorchNet", "crown_bounds",
           "interval_bounds", "prepare"]

Sides = Literal["both", "upper"]


@dataclass(frozen=True)
class CrownOptions:
    """How :func:`crown_bounds` bounds.

    ``alpha``: optimise the lower ReLU slopes per row (alpha-CROWN, ``alpha_iters`` Adam
    steps). ``beta``: with split constraints, optimise their multipliers (beta-CROWN; ReLU
    branch and bound needs it to converge). ``sides="upper"`` skips the lower bounds (``lo``
    is ``-inf``). ``return_layers``: also return the hidden layers' bounds and the final
    back-substitution coefficients. ``slopes``: also return the input coefficients of the
    bounds' linear functions. ``focus_iters``: Adam steps of a focused row (see ``focus`` in
    :func:`crown_bounds`). ``device``: where the tensors live.
    """

    alpha: bool = False
    beta: bool = False
    alpha_iters: int = 20
    sides: Sides = "both"
    return_layers: bool = False
    slopes: bool = False
    focus_iters: int = 20
    alpha_lr: float = 0.1
    beta_lr: float = 0.05
    device: str | torch.device = "cpu"


@dataclass(frozen=True)
class Branch:
    """ReLU split constraints of the boxes: one ``(B, width)`` (or ``(width,)``) tensor per
    hidden layer, ``+1`` forces a neuron active (``z >= 0``), ``-1`` inactive, ``0`` free; and
    optionally ``(alphas, betas)`` as a result returns them, to start optimising from (e.g. a
    parent sub-problem's)."""

    splits: object = None
    warm_start: Params | None = None


@dataclass(frozen=True)
class BoundResult:
    """Bounds over a batch of ``B`` boxes.

    ``lo``, ``hi``: ``(B, K)`` bounds of the specification rows (the outputs for intervals).
    ``layers``: per hidden layer ``(lo, hi)`` pre-activation bounds ``(B, width)`` (split
    clamps applied), when asked for. ``infeasible``: ``(B,)`` boxes whose split constraints
    cannot hold together (their bounds are ``-inf``/``+inf``; prune them). ``coefficients``:
    per hidden layer ``(B, K, width)``, the coefficient of each ReLU output in the
    back-substituted upper bound of each row (for branching heuristics), when asked for.
    ``slopes``: ``(B, 2K, n_in)`` (``(B, K, n_in)`` with ``sides="upper"``), the input
    coefficients of the linear functions whose maxima are the ``K`` upper bounds and then whose
    maxima are minus the ``K`` lower bounds, when asked for.
    ``alphas``/``betas``: when optimised, per hidden layer ``(B, R, width)`` lower slopes and
    split multipliers (``None`` for a layer without splits), ``R`` the ``K`` upper rows then,
    unless ``sides="upper"``, the ``K`` lower rows: a warm start for related problems.
    """

    lo: torch.Tensor
    hi: torch.Tensor
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None
    infeasible: torch.Tensor
    coefficients: tuple[torch.Tensor, ...] | None = None
    alphas: tuple[torch.Tensor, ...] | None = None
    betas: tuple[torch.Tensor | None, ...] | None = None
    slopes: torch.Tensor | None = None


def interval_bounds(net: Network | TorchNet, lower: Tensorish, upper: Tensorish, *,
                    device: str | torch.device = "cpu") -> BoundResult:
    """Sound interval propagation over each box ``(B, n_in)``: output ``lo``/``hi`` ``(B, m)``
    and every hidden layer's pre-activation bounds in ``layers``."""
    tn = prepare(net, device)
    xl, xu = as_box(lower, upper, tn.in_size, tn.device)
    layers = []
    hl, hu = xl, xu
    for k in range(len(tn.weights)):
        lo, hi, _ = affine_interval(tn, k, hl, hu)
        if k < len(tn.weights) - 1:
            layers.append((lo, hi))
            hl, hu = lo.clamp(min=0), hi.clamp(min=0)
    infeasible = torch.zeros(xl.shape[0], dtype=torch.bool, device=tn.device)
    return BoundResult(lo, hi, tuple(layers), infeasible)


def _splits(splits: object, tn: TorchNet, batch: int) -> list[torch.Tensor | None]:
    if splits is None:
        return [None] * len(tn.hidden_sizes)
    splits = list(splits)  # type: ignore[call-overload]
    if len(splits) != len(tn.hidden_sizes):
        raise ShapeMismatchError(
            f"splits has {len(splits)} entries but the network has {len(tn.hidden_sizes)} "
            "hidden layers: give one (B, width) tensor per hidden layer")
    out: list[torch.Tensor | None] = []
    for s, w in zip(splits, tn.hidden_sizes, strict=True):
        s = torch.as_tensor(s).to(device=tn.device, dtype=torch.float64).reshape(-1, w)
        out.append(torch.sign(s).expand(batch, w) if bool((s != 0).any()) else None)
    return out


def _spec(c: Tensorish | None, tn: TorchNet, batch: int) -> torch.Tensor:
    m = tn.out_size
    if c is None:
        return torch.eye(m, dtype=torch.float64, device=tn.device).expand(batch, m, m)
    c = (c.to(dtype=torch.float64, device=tn.device) if torch.is_tensor(c)
         else torch.tensor(np.asarray(c, np.float64), dtype=torch.float64, device=tn.device))
    c = c.unsqueeze(0) if c.ndim == 1 else c
    if c.shape[-1] != m or c.ndim not in (2, 3) or (c.ndim == 3 and c.shape[0] != batch):
        raise ShapeMismatchError(
            f"C has shape {tuple(c.shape)}; the network has {m} outputs and there are {batch} "
            f"boxes: give C as (K, {m}) or ({batch}, K, {m})")
    return c.expand(batch, *c.shape[-2:])


def crown_bounds(net: Network | TorchNet, lower: Tensorish, upper: Tensorish,
                 C: Tensorish | None = None, options: CrownOptions = CrownOptions(), *,
                 branch: Branch | None = None, focus: Focus | None = None) -> BoundResult:
    """Sound CROWN bounds of ``C @ N(x)`` over each box (``lower``/``upper`` ``(B, n_in)``).

    ``C``: ``(K, m)`` or ``(B, K, m)``, default identity; ``lo``/``hi`` are ``(B, K)``.
    ``branch``: ReLU split constraints (and a warm start); boxes whose splits contradict each
    other are flagged in ``infeasible``. ``net`` may be a :func:`prepare`-d network.
    ``focus`` (with ``sides="upper"``, without ``alpha``): given the plain CROWN upper bounds
    ``(B, K)``, the indices ``(B, k)`` of the rows worth tightening; those rows are then
    optimised as in alpha-CROWN (``focus_iters`` steps) on the same intermediate bounds and
    keep the smaller of the two sound bounds (and that bound's slopes). Since the intermediate
    bounds dominate the cost, a few focused rows cost little more than plain CROWN.
    """
    opts, branch = options, branch or Branch()
    if focus is not None and (opts.sides != "upper" or opts.alpha):
        raise ValueError('focus needs sides="upper" and alpha=False (it optimises its rows)')
    tn = prepare(net, opts.device)
    box = as_box(lower, upper, tn.in_size, tn.device)
    batch = box[0].shape[0]
    spec = _spec(C, tn, batch)
    n_rows = spec.shape[1]
    with torch.no_grad():
        inter = intermediate(tn, box, _splits(branch.splits, tn, batch))
        rows = spec if opts.sides == "upper" else torch.cat([spec, -spec], dim=1)
        a, const = rows @ tn.weights[-1], rows @ tn.biases[-1]
        mass = bmv(rows.abs(), inter.mag)
    tuning = Tuning(opts.alpha, opts.beta and any(r.split is not None for r in inter.relaxed),
                    opts.alpha_iters, opts.alpha_lr, opts.beta_lr)
    params: Params = (None, None)
    if (tuning.alpha or tuning.beta) and inter.relaxed and opts.alpha_iters > 0:
        with torch.enable_grad():
            params = optimise(tn, (a, const), inter.relaxed, box, tuning, ~inter.infeasible,
                              branch.warm_start)
    with torch.no_grad():
        collect = Collect([a] * len(inter.relaxed) if opts.return_layers else None,
                          [] if opts.slopes else None)
        bound = backsub(tn, (a, const), inter.relaxed, box, params, mass=mass, collect=collect)
        if focus is not None:
            bound = focused(tn, inter, box, rows, bound, focus,
                            Tuning(True, False, opts.focus_iters, opts.alpha_lr),
                            collect.input_slopes)
        return _result(bound, n_rows, inter, opts, params, collect)


def _result(bound: torch.Tensor, n_rows: int, inter: Intermediate, opts: CrownOptions,
            params: Params, collect: Collect) -> BoundResult:
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=bound.device)
    dead = inter.infeasible.unsqueeze(1)
    hi = torch.where(dead, inf, bound[:, :n_rows])
    lo = (torch.full_like(hi, -inf) if opts.sides == "upper"
          else torch.where(dead, -inf, -bound[:, n_rows:]))
    coeffs = (tuple(c[:, :n_rows] for c in collect.coefficients)
              if collect.coefficients is not None else None)
    alphas, betas = params
    found = collect.input_slopes
    return BoundResult(lo, hi, tuple(inter.layers) if opts.return_layers else None,
                       inter.infeasible, coeffs, None if alphas is None else tuple(alphas),
                       None if betas is None else tuple(betas), found[0] if found else None)
