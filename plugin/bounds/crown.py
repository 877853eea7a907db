"""Sound bounds of a ReLU network over input boxes: interval propagation and (alpha-)CROWN.

Batched over boxes ``(B, n_in)``, torch float64, on any device. :func:`interval_bounds`
propagates intervals; :func:`crown_bounds` back-substitutes linear relaxations (CROWN /
DeepPoly): the chord above each unstable ReLU, a line of slope in ``[0, 1]`` below it. Hidden
layers are bounded in order; a neuron that interval (and, in low input dimension, forward linear)
bounds already prove stable keeps those bounds, the others are tightened by back-substitution to
the input. Optionally the lower slopes (alpha) and, under ReLU split constraints, multipliers of
the splits (beta, as in beta-CROWN) are optimised by projected Adam for the final rows; any
alpha in ``[0, 1]`` and beta ``>= 0`` gives a valid bound, so optimising only tightens.

Guaranteed: ``lo <= C @ N(x) <= hi`` for every real ``x`` in the box (satisfying the split signs,
when given), where ``N`` is the real-arithmetic network whose weights are exactly the float64
numbers of the :class:`~nnbisim.core.model.Network` (float32 ONNX weights are represented exactly).
Rounding is accounted for: every bound carries the outward margin
``2 * (gamma_N + u) * mass + 2^-1000``, ``u = 2^-53``, ``gamma_N = N u / (1 - N u)`` with ``N``
above twice the longest dot product plus the additions per bound, and ``mass`` an upper bound of
the sum of magnitudes of every rounded term: ``|G_j| @ (|W_j| @ hmax_{j-1} + |b_j|)`` for each
relaxed coefficient matrix ``G_j`` (``hmax`` the post-ReLU upper bounds, ``|x|``'s bound for the
input), the ReLU intercept terms and ``|A| @ max(|l|, |u|)`` over the box. That bounds the error
of each dot product in any summation order, with or without fused multiply-add (any BLAS,
cuBLAS), and of the elementwise products; the factor 2 covers the rounding of the margin itself.
Forward linear bounds carry the same kind of error terms; chord intercepts are rounded up with
``nextafter``; ``2^-1000`` covers underflow. Inputs must be finite (overflow gives inf bounds).

Not guaranteed: anything about a float32 evaluation such as onnxruntime's, which rounds each
layer to float32 and differs from the real network by that rounding; callers comparing with it
must account for that separately.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network

UNIT = 2.0**-53
TINY = 2.0**-1000
FORWARD_MAX_INPUTS = 64  # forward linear bounds screen neurons up to this input size
REFINE_GROUPS = 8  # boxes are refined in groups of similar unstable counts (less padding)
Tensorish = torch.Tensor | np.ndarray
Sides = Literal["both", "upper"]


def gamma(n: int) -> float:
    """``n u / (1 - n u)``: relative rounding bound of a float64 dot product of length ``n``."""
    return n * UNIT / (1.0 - n * UNIT)


@dataclass(frozen=True)
class TorchNet:
    """A network's layers as float64 tensors on one device, with the derived matrices bounding
    reuses (positive/negative parts, magnitudes, ``[W | b]``) and its rounding constant ``g``."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    pos: tuple[torch.Tensor, ...]
    neg: tuple[torch.Tensor, ...]
    abs_weights: tuple[torch.Tensor, ...]
    augmented: tuple[torch.Tensor, ...]
    g: float
    device: torch.device

    @property
    def in_size(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_size(self) -> int:
        return int(self.weights[-1].shape[0])

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(int(w.shape[0]) for w in self.weights[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float64 evaluation of a batch ``(B, n_in)`` (rounded: a witness, not a bound)."""
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.T + b
            x = torch.relu(x) if k < len(self.weights) - 1 else x
        return x


def prepare(net: Network | TorchNet, device: str | torch.device = "cpu") -> TorchNet:
    """The network's layers as tensors on ``device``; pass the result to many calls."""
    device = torch.device(device)
    if isinstance(net, TorchNet) and net.device == device:
        return net
    if isinstance(net, TorchNet):
        ws = tuple(w.to(device) for w in net.weights)
        bs = tuple(b.to(device) for b in net.biases)
    else:
        ws = tuple(torch.tensor(la.weight, dtype=torch.float64, device=device) for la in net.layers)
        bs = tuple(torch.tensor(la.bias, dtype=torch.float64, device=device) for la in net.layers)
    longest = max(max(w.shape) for w in ws)
    return TorchNet(ws, bs, tuple(w.clamp(min=0) for w in ws), tuple(w.clamp(max=0) for w in ws),
                    tuple(w.abs() for w in ws),
                    tuple(torch.cat([w, b.unsqueeze(1)], dim=1)
                          for w, b in zip(ws, bs, strict=True)),
                    gamma(2 * longest + 4 * len(ws) + 16), device)


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


@dataclass(frozen=True)
class _Relax:
    """One hidden layer's ReLU relaxation per box: ``sl z <= relu(z) <= su z + tu`` on the
    region, ``mag`` bounds ``|W h + b|`` there (for the margin), ``terms`` is
    ``[tu, tu + su mag]``."""

    su: torch.Tensor
    tu: torch.Tensor
    sl: torch.Tensor
    unstable: torch.Tensor
    mag: torch.Tensor
    terms: torch.Tensor
    split: torch.Tensor | None

    def take(self, boxes: torch.Tensor) -> _Relax:
        split = None if self.split is None else self.split[boxes]
        return _Relax(self.su[boxes], self.tu[boxes], self.sl[boxes], self.unstable[boxes],
                      self.mag[boxes], self.terms[boxes], split)


def _round_up(x: torch.Tensor, steps: int) -> torch.Tensor:
    inf = torch.full_like(x, float("inf"))
    for _ in range(steps):
        x = torch.nextafter(x, inf)
    return x


def _relax(lo: torch.Tensor, hi: torch.Tensor, mag: torch.Tensor, split: torch.Tensor | None
           ) -> _Relax:
    active, inactive = lo >= 0, hi <= 0
    unstable = ~active & ~inactive
    one = active.to(lo.dtype)
    su = torch.where(unstable, hi / torch.where(unstable, hi - lo, 1.0), one)
    # relu <= su z + tu on [lo, hi] iff it holds at both ends: tu >= -su lo, tu >= hi (1 - su)
    tu = torch.where(unstable, _round_up(torch.maximum(-su * lo, hi * (1.0 - su)), 3), 0.0)
    sl = torch.where(unstable, (hi > -lo).to(lo.dtype), one)
    return _Relax(su, tu, sl, unstable, mag, torch.stack([tu, tu + su * mag], dim=-1), split)


def _box(lower: Tensorish, upper: Tensorish, n_in: int, device: torch.device
         ) -> tuple[torch.Tensor, torch.Tensor]:
    def tensor(v: Tensorish) -> torch.Tensor:
        if torch.is_tensor(v):
            return v.to(dtype=torch.float64, device=device)
        return torch.tensor(np.asarray(v, np.float64), dtype=torch.float64, device=device)

    xl, xu = tensor(lower), tensor(upper)
    xl, xu = xl.reshape(-1, xl.shape[-1]), xu.reshape(-1, xu.shape[-1])
    if xl.shape != xu.shape or xl.shape[1] != n_in:
        raise ShapeMismatchError(
            f"box bounds have shapes {tuple(xl.shape)} and {tuple(xu.shape)} but the network "
            f"takes {n_in} inputs: pass lower and upper as (B, {n_in}) arrays")
    if not (torch.isfinite(xl).all() and torch.isfinite(xu).all()):
        raise InputError("box bounds must be finite numbers: replace inf/nan by real limits")
    if (xl > xu).any():
        raise InputError("a box has lower > upper in some input: swap or fix those bounds")
    return xl, xu


def _affine_interval(tn: TorchNet, k: int, hl: torch.Tensor, hu: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sound interval of ``W_k h + b_k`` for ``h`` in ``[hl, hu]``, and the magnitude bound."""
    w_pos, w_neg, b = tn.pos[k].T, tn.neg[k].T, tn.biases[k]
    mag = torch.maximum(hl.abs(), hu.abs()) @ tn.abs_weights[k].T + b.abs()
    margin = 2.0 * tn.g * mag + TINY
    return (hl @ w_pos + hu @ w_neg + b) - margin, (hu @ w_pos + hl @ w_neg + b) + margin, mag


@dataclass(frozen=True)
class _Linear:
    """Forward linear bounds of a layer's values, per box:
    ``x @ lc + lb - el <= v(x) <= x @ uc + ub + eu`` (``el``, ``eu`` bound the rounding)."""

    uc: torch.Tensor  # (B, n_in, w)
    ub: torch.Tensor  # (B, w)
    lc: torch.Tensor
    lb: torch.Tensor
    eu: torch.Tensor
    el: torch.Tensor


def _bmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(B, R, w) x (B, w) -> (B, R)``."""
    return (a @ v.unsqueeze(-1)).squeeze(-1)


def _vm(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``(B, n) x (B, n, w) -> (B, w)``."""
    return (v.unsqueeze(1) @ a).squeeze(1)


def _fwd_affine(tn: TorchNet, k: int, s: _Linear, xmax: torch.Tensor) -> _Linear:
    wp, wn, b, g = tn.pos[k].T, tn.neg[k].T, tn.biases[k], tn.g
    mag = torch.maximum(_vm(xmax, s.uc.abs()) + s.ub.abs(), _vm(xmax, s.lc.abs()) + s.lb.abs())
    err = 2.0 * g * (mag @ tn.abs_weights[k].T + b.abs())
    scale = 1.0 + 4.0 * g
    return _Linear(s.uc @ wp + s.lc @ wn, s.ub @ wp + s.lb @ wn + b,
                   s.lc @ wp + s.uc @ wn, s.lb @ wp + s.ub @ wn + b,
                   (s.eu @ wp - s.el @ wn + err) * scale, (s.el @ wp - s.eu @ wn + err) * scale)


def _fwd_concretize(tn: TorchNet, s: _Linear, xl: torch.Tensor, xu: torch.Tensor,
                    xmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    hi = _vm(xu, s.uc.clamp(min=0)) + _vm(xl, s.uc.clamp(max=0)) + s.ub
    lo = _vm(xl, s.lc.clamp(min=0)) + _vm(xu, s.lc.clamp(max=0)) + s.lb
    g, scale = tn.g, 1.0 + 4.0 * tn.g
    hi = hi + (2.0 * g * (_vm(xmax, s.uc.abs()) + s.ub.abs()) + s.eu * scale + TINY)
    lo = lo - (2.0 * g * (_vm(xmax, s.lc.abs()) + s.lb.abs()) + s.el * scale + TINY)
    return lo, hi


def _fwd_relu(tn: TorchNet, s: _Linear, r: _Relax, xmax: torch.Tensor) -> _Linear:
    uc, lc = s.uc * r.su.unsqueeze(1), s.lc * r.sl.unsqueeze(1)
    ub_scaled, lb = s.ub * r.su, s.lb * r.sl
    mag_u = _vm(xmax, uc.abs()) + ub_scaled.abs() + r.tu
    mag_l = _vm(xmax, lc.abs()) + lb.abs()
    scale = 1.0 + 4.0 * tn.g
    return _Linear(uc, ub_scaled + r.tu, lc, lb, (s.eu * r.su + 4.0 * UNIT * mag_u) * scale,
                   (s.el * r.sl + 4.0 * UNIT * mag_l) * scale)


def _backsub(tn: TorchNet, a: torch.Tensor, const: torch.Tensor, relax: list[_Relax],
             xl: torch.Tensor, xu: torch.Tensor, alphas: list[torch.Tensor] | None = None,
             betas: list[torch.Tensor | None] | None = None, *, mass: torch.Tensor | None = None,
             coefficients: list[torch.Tensor] | None = None,
             input_slopes: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Upper bounds ``(B, R)`` of the rows ``a @ h_{k-1} + const`` (``a`` is ``(B, R, w)``,
    ``k = len(relax)``). With ``mass`` (the magnitude of what was rounded before) the margin
    is added and the result is sound; without, it is the plain float value (for optimising).
    ``alphas``/``betas``: per layer dense ``(B, R, w)`` lower slopes / split multipliers.
    ``input_slopes``, if given, receives the final coefficients on the input ``(B, R, n_in)``."""
    for j in reversed(range(len(relax))):
        r = relax[j]
        if coefficients is not None:
            coefficients[j] = a
        a_pos = a.clamp(min=0)
        a_neg = a - a_pos
        sl = r.sl.unsqueeze(1) if alphas is None else alphas[j]
        g = torch.addcmul(a_pos * r.su.unsqueeze(1), a_neg, sl)
        if betas is not None and betas[j] is not None:
            g = g + betas[j] * r.split.unsqueeze(1)
            if mass is not None:
                mass = mass + (betas[j] * r.mag.unsqueeze(1)).sum(dim=-1)
        nxt = g @ tn.augmented[j]
        a, const = nxt[..., :-1], const + nxt[..., -1]
        if mass is None:
            const = const + _bmv(a_pos, r.tu)
        else:  # |g| <= a_pos su - a_neg (slopes in [0, 1])
            terms = a_pos @ r.terms
            const = const + terms[..., 0]
            mass = mass + terms[..., 1] - _bmv(a_neg, r.mag)
    if input_slopes is not None:
        input_slopes.append(a)
    a_pos = a.clamp(min=0)
    a_neg = a - a_pos
    val = _bmv(a_pos, xu) + _bmv(a_neg, xl) + const
    if mass is None:
        return val
    xmax = torch.maximum(xl.abs(), xu.abs())
    mass = mass + _bmv(a_pos, xmax) - _bmv(a_neg, xmax)
    return val + (2.0 * (tn.g + UNIT) * mass + TINY)


def _refine(tn: TorchNet, k: int, lo: torch.Tensor, hi: torch.Tensor, relax: list[_Relax],
            xl: torch.Tensor, xu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tighten the still unstable neurons of layer ``k`` by back-substitution: one row per
    unstable neuron, boxes grouped by their number of unstable neurons to limit padding."""
    unstable = (lo < 0) & (hi > 0)
    counts = unstable.sum(dim=1)
    busy = counts.nonzero().squeeze(1)
    if len(busy) == 0:
        return lo, hi
    lo, hi = lo.clone(), hi.clone()
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=tn.device)
    order = busy[torch.argsort(counts[busy])]
    for boxes in torch.tensor_split(order, min(REFINE_GROUPS, len(order))):
        cnt = counts[boxes]
        width = int(cnt.max())
        idx = torch.sort(unstable[boxes].to(torch.int8), dim=1, descending=True,
                         stable=True).indices[:, :width]
        valid = torch.arange(width, device=tn.device).unsqueeze(0) < cnt.unsqueeze(1)
        rows, bias = tn.weights[k][idx], tn.biases[k][idx]
        bound = _backsub(tn, torch.cat([rows, -rows], dim=1), torch.cat([bias, -bias], dim=1),
                         [r.take(boxes) for r in relax], xl[boxes], xu[boxes],
                         mass=torch.zeros(len(boxes), 2 * width, dtype=torch.float64,
                                          device=tn.device))
        hi[boxes] = hi[boxes].scatter_reduce(1, idx, torch.where(valid, bound[:, :width], inf),
                                             reduce="amin")
        lo[boxes] = lo[boxes].scatter_reduce(1, idx, torch.where(valid, -bound[:, width:], -inf),
                                             reduce="amax")
    return lo, hi


def _intermediate(tn: TorchNet, xl: torch.Tensor, xu: torch.Tensor,
                  splits: list[torch.Tensor | None]
                  ) -> tuple[list[_Relax], list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor,
                             torch.Tensor]:
    """Every hidden layer's pre-activation bounds and relaxation, the infeasibility mask and
    the magnitude bound of the output layer's pre-activation."""
    relax: list[_Relax] = []
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    infeasible = torch.zeros(xl.shape[0], dtype=torch.bool, device=tn.device)
    xmax = torch.maximum(xl.abs(), xu.abs())
    fwd = None
    if tn.in_size <= FORWARD_MAX_INPUTS:
        eye = torch.eye(tn.in_size, dtype=torch.float64, device=tn.device).expand(len(xl), -1, -1)
        zero = torch.zeros_like(xl)
        fwd = _Linear(eye, zero, eye, zero, zero, zero)
    hl, hu = xl, xu
    for k in range(len(tn.hidden_sizes)):
        lo, hi, mag = _affine_interval(tn, k, hl, hu)
        if fwd is not None:
            fwd = _fwd_affine(tn, k, fwd, xmax)
            if k > 0:
                flo, fhi = _fwd_concretize(tn, fwd, xl, xu, xmax)
                lo, hi = torch.maximum(lo, flo), torch.minimum(hi, fhi)
        if k > 0:
            lo, hi = _refine(tn, k, lo, hi, relax, xl, xu)
        s = splits[k]
        if s is not None:
            lo = torch.where(s > 0, lo.clamp(min=0), lo)
            hi = torch.where(s < 0, hi.clamp(max=0), hi)
            bad = lo > hi
            infeasible |= bad.any(dim=1)
            hi = torch.where(bad, lo, hi)
        layers.append((lo, hi))
        relax.append(_relax(lo, hi, mag, s))
        if fwd is not None:
            fwd = _fwd_relu(tn, fwd, relax[-1], xmax)
        hl, hu = lo.clamp(min=0), hi.clamp(min=0)
    _, _, mag = _affine_interval(tn, len(tn.hidden_sizes), hl, hu)
    return relax, layers, infeasible, mag


def interval_bounds(net: Network | TorchNet, lower: Tensorish, upper: Tensorish, *,
                    device: str | torch.device = "cpu") -> BoundResult:
    """Sound interval propagation over each box ``(B, n_in)``: output ``lo``/``hi`` ``(B, m)``
    and every hidden layer's pre-activation bounds in ``layers``."""
    tn = prepare(net, device)
    xl, xu = _box(lower, upper, tn.in_size, tn.device)
    layers = []
    hl, hu = xl, xu
    for k in range(len(tn.weights)):
        lo, hi, _ = _affine_interval(tn, k, hl, hu)
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


Params = tuple[list[torch.Tensor] | None, list[torch.Tensor | None] | None]


class _Adam:
    """Adam (torch's defaults: betas 0.9 and 0.999, eps 1e-8) on groups of tensors with a
    learning rate each, by hand: ``torch.optim.Adam``'s first construction in a process imports
    torch._dynamo, a start-up cost each process would pay for a few dozen small steps."""

    def __init__(self, groups: list[tuple[list[torch.Tensor], float]]):
        self.params = [p for ps, _ in groups for p in ps]
        self.lrs = [lr for ps, lr in groups for _ in ps]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: tuple[torch.Tensor | None, ...]) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
        with torch.no_grad():
            for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lrs, strict=True):
                if g is None:
                    continue
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                p.addcdiv_(m, (v.sqrt() / c2 ** 0.5).add_(1e-8), value=-lr / c1)


def _optimise(tn: TorchNet, a: torch.Tensor, const: torch.Tensor, relax: list[_Relax],
              xl: torch.Tensor, xu: torch.Tensor, use: tuple[bool, bool], iters: int,
              feasible: torch.Tensor, start: Params | None) -> Params:
    """Projected Adam on the lower slopes of unstable neurons and the multipliers of split
    neurons, per row (stored sparsely), from ``start`` (dense ``(B, R, w)``) or CROWN's choice
    and zero; returns the best per row as dense ``(B, R, w)`` tensors."""
    shape = a.shape[:2]
    start_a, start_b = start or (None, None)
    par_a: list[tuple[int, tuple[torch.Tensor, ...], torch.Tensor]] = []
    par_b: list[tuple[int, tuple[torch.Tensor, ...], torch.Tensor]] = []
    for j, r in enumerate(relax):
        if use[0]:
            w = r.unstable.nonzero(as_tuple=True)
            init = (r.sl[w].unsqueeze(1).expand(-1, shape[1]) if start_a is None
                    else start_a[j][w[0], :, w[1]].clamp(0.0, 1.0))
            par_a.append((j, w, init.detach().clone().requires_grad_()))
        if use[1] and r.split is not None:
            w = (r.split != 0).nonzero(as_tuple=True)
            init = (torch.zeros(len(w[0]), shape[1], dtype=torch.float64, device=tn.device)
                    if start_b is None or start_b[j] is None
                    else start_b[j][w[0], :, w[1]].clamp(min=0.0))
            par_b.append((j, w, init.detach().clone().requires_grad_()))

    def dense(pa: list[torch.Tensor], pb: list[torch.Tensor]) -> Params:
        alphas = [r.sl.unsqueeze(1).expand(*shape, -1) for r in relax]
        betas: list[torch.Tensor | None] = [None] * len(relax)
        for (j, w, _), p in zip(par_a, pa, strict=True):
            alphas[j] = alphas[j].clone()
            alphas[j][w[0], :, w[1]] = p
        for (j, w, _), p in zip(par_b, pb, strict=True):
            betas[j] = torch.zeros(*shape, relax[j].sl.shape[1], dtype=torch.float64,
                                   device=tn.device)
            betas[j][w[0], :, w[1]] = p
        return (alphas if use[0] else None), (betas if par_b else None)

    params_a, params_b = [p for _, _, p in par_a], [p for _, _, p in par_b]
    groups = [(ps, lr) for ps, lr in ((params_a, 0.1), (params_b, 0.05)) if ps]
    opt = _Adam(groups) if groups else None
    best = torch.full(shape, float("inf"), dtype=torch.float64, device=tn.device)
    keep_a = [p.detach().clone() for p in params_a]
    keep_b = [p.detach().clone() for p in params_b]
    for it in range(iters + 1):
        val = _backsub(tn, a, const, relax, xl, xu, *dense(params_a, params_b))
        with torch.no_grad():
            better = val < best
            best = torch.minimum(best, val)
            for keep, cur, par in ((keep_a, params_a, par_a), (keep_b, params_b, par_b)):
                for i, p in enumerate(cur):
                    keep[i] = torch.where(better[par[i][1][0]], p.detach(), keep[i])
        if it == iters or opt is None:
            break
        grads = torch.autograd.grad(val[feasible].sum(), opt.params, allow_unused=True)
        opt.step(grads)
        with torch.no_grad():
            for p in params_a:
                p.clamp_(0.0, 1.0)
            for p in params_b:
                p.clamp_(min=0.0)
    with torch.no_grad():
        return dense(keep_a, keep_b)


# plain CROWN upper bounds (B, K) -> indices (B, k) of the rows to optimise
Focus = Callable[[torch.Tensor], torch.Tensor]


def _focused(tn: TorchNet, focus: Focus, iters: int, bound: torch.Tensor,
             found: list[torch.Tensor] | None, rows: torch.Tensor, relax: list[_Relax],
             mag: torch.Tensor, xl: torch.Tensor, xu: torch.Tensor,
             feasible: torch.Tensor) -> torch.Tensor:
    """``bound`` (B, K) with the rows ``focus`` picks re-bounded with optimised lower slopes
    (each the smaller of its two sound bounds); ``found[0]``, the input slopes, updated where
    the optimised bound won."""
    idx = focus(bound).to(device=tn.device, dtype=torch.long)
    if not relax or idx.numel() == 0:
        return bound
    sub = rows.gather(1, idx.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))  # (B, k, m)
    a, const = sub @ tn.weights[-1], sub @ tn.biases[-1]
    with torch.enable_grad():
        alphas, _ = _optimise(tn, a, const, relax, xl, xu, (True, False), iters, feasible,
                              None)
    slopes: list[torch.Tensor] | None = [] if found is not None else None
    better = _backsub(tn, a, const, relax, xl, xu, alphas, mass=_bmv(sub.abs(), mag),
                      input_slopes=slopes)
    old = bound.gather(1, idx)
    win = better < old
    bound = bound.scatter(1, idx, torch.where(win, better, old))
    if found is not None and slopes:
        n = found[0].shape[-1]
        where = idx.unsqueeze(-1).expand(-1, -1, n)
        mixed = torch.where(win.unsqueeze(-1), slopes[0], found[0].gather(1, where))
        found[0] = found[0].scatter(1, where, mixed)
    return bound


def crown_bounds(net: Network | TorchNet, lower: Tensorish, upper: Tensorish,
                 C: Tensorish | None = None, *, alpha: bool = False, beta: bool = False,
                 alpha_iters: int = 20, splits: object = None, sides: Sides = "both",
                 return_layers: bool = False, warm_start: Params | None = None,
                 slopes: bool = False, focus: Focus | None = None, focus_iters: int = 20,
                 device: str | torch.device = "cpu") -> BoundResult:
    """Sound CROWN bounds of ``C @ N(x)`` over each box (``lower``/``upper`` ``(B, n_in)``).

    ``C``: ``(K, m)`` or ``(B, K, m)``, default identity; ``lo``/``hi`` are ``(B, K)``.
    ``alpha``: optimise the lower ReLU slopes per row (alpha-CROWN, ``alpha_iters`` Adam steps).
    ``beta``: with ``splits``, optimise multipliers of the split constraints (beta-CROWN; ReLU
    branch and bound needs it to converge). ``splits``: one ``(B, width)`` (or ``(width,)``)
    tensor per hidden layer, ``+1`` forces a neuron active (``z >= 0``), ``-1`` inactive, ``0``
    free; boxes whose splits contradict each other are flagged in ``infeasible``.
    ``sides="upper"`` skips the lower bounds (``lo`` is ``-inf``). ``return_layers``: also
    return the hidden layers' bounds and the final back-substitution coefficients.
    ``warm_start``: ``(alphas, betas)`` as returned in a result, to start the optimisation from
    (e.g. a parent sub-problem's). ``net`` may be a :func:`prepare`-d network.
    ``focus`` (with ``sides="upper"``, without ``alpha``): given the plain CROWN upper bounds
    ``(B, K)``, the indices ``(B, k)`` of the rows worth tightening; those rows are then
    optimised as in alpha-CROWN (``focus_iters`` steps) on the same intermediate bounds and
    keep the smaller of the two sound bounds (and that bound's slopes). Since the intermediate
    bounds dominate the cost, a few focused rows cost little more than plain CROWN.
    """
    tn = prepare(net, device)
    xl, xu = _box(lower, upper, tn.in_size, tn.device)
    batch = xl.shape[0]
    spec = _spec(C, tn, batch)
    n_rows = spec.shape[1]
    with torch.no_grad():
        relax, layers, infeasible, mag = _intermediate(tn, xl, xu, _splits(splits, tn, batch))
        rows = spec if sides == "upper" else torch.cat([spec, -spec], dim=1)
        a, const = rows @ tn.weights[-1], rows @ tn.biases[-1]
        mass = _bmv(rows.abs(), mag)
    if focus is not None and (sides != "upper" or alpha):
        raise ValueError('focus needs sides="upper" and alpha=False (it optimises its rows)')
    use = (alpha, beta and any(r.split is not None for r in relax))
    alphas, betas = None, None
    if any(use) and relax and alpha_iters > 0:
        with torch.enable_grad():
            alphas, betas = _optimise(tn, a, const, relax, xl, xu, use, alpha_iters, ~infeasible,
                                      warm_start)
    with torch.no_grad():
        coefficients: list[torch.Tensor] | None = [a] * len(relax) if return_layers else None
        found: list[torch.Tensor] | None = [] if slopes else None
        bound = _backsub(tn, a, const, relax, xl, xu, alphas, betas, mass=mass,
                         coefficients=coefficients, input_slopes=found)
        if focus is not None:
            bound = _focused(tn, focus, focus_iters, bound, found, rows, relax, mag, xl, xu,
                             ~infeasible)
        inf = torch.tensor(float("inf"), dtype=torch.float64, device=tn.device)
        dead = infeasible.unsqueeze(1)
        hi = torch.where(dead, inf, bound[:, :n_rows])
        lo = (torch.full_like(hi, -inf) if sides == "upper"
              else torch.where(dead, -inf, -bound[:, n_rows:]))
    coeffs = tuple(c[:, :n_rows] for c in coefficients) if coefficients is not None else None
    return BoundResult(lo, hi, tuple(layers) if return_layers else None, infeasible, coeffs,
                       None if alphas is None else tuple(alphas),
                       None if betas is None else tuple(betas),
                       found[0] if found else None)
