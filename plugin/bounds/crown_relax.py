"""The inner steps of CROWN (:mod:`nnbisim.bounds.crown`): ReLU relaxations, forward linear
bounds, back-substitution and the layer-by-layer intermediate bounds, each with its rounding
margin (see that module's docstring for the guarantee and the margins)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.bounds.fp import TINY, U, gamma, round_up
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network

FORWARD_MAX_INPUTS = 64  # forward linear bounds screen neurons up to this input size
REFINE_GROUPS = 8  # boxes are refined in groups of similar unstable counts (less padding)
Tensorish = torch.Tensor | np.ndarray
Box = tuple[torch.Tensor, torch.Tensor]  # (lower, upper) of each box, (B, n_in)
Rows = tuple[torch.Tensor, torch.Tensor]  # (a (B, R, w), const (B, R)) of the rows bounded
# per hidden layer dense (B, R, w) lower slopes, and split multipliers (None: layer unsplit)
Params = tuple[list[torch.Tensor] | None, list[torch.Tensor | None] | None]


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
class Relax:
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

    def take(self, boxes: torch.Tensor) -> Relax:
        split = None if self.split is None else self.split[boxes]
        return Relax(self.su[boxes], self.tu[boxes], self.sl[boxes], self.unstable[boxes],
                     self.mag[boxes], self.terms[boxes], split)


def relax(lo: torch.Tensor, hi: torch.Tensor, mag: torch.Tensor, split: torch.Tensor | None
          ) -> Relax:
    active, inactive = lo >= 0, hi <= 0
    unstable = ~active & ~inactive
    one = active.to(lo.dtype)
    su = torch.where(unstable, hi / torch.where(unstable, hi - lo, 1.0), one)
    # relu <= su z + tu on [lo, hi] iff it holds at both ends: tu >= -su lo, tu >= hi (1 - su)
    tu = torch.where(unstable, round_up(torch.maximum(-su * lo, hi * (1.0 - su)), 3), 0.0)
    sl = torch.where(unstable, (hi > -lo).to(lo.dtype), one)
    return Relax(su, tu, sl, unstable, mag, torch.stack([tu, tu + su * mag], dim=-1), split)


def as_box(lower: Tensorish, upper: Tensorish, n_in: int, device: torch.device) -> Box:
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


def affine_interval(tn: TorchNet, k: int, hl: torch.Tensor, hu: torch.Tensor
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


def bmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
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


def _fwd_concretize(tn: TorchNet, s: _Linear, box: Box, xmax: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    xl, xu = box
    hi = _vm(xu, s.uc.clamp(min=0)) + _vm(xl, s.uc.clamp(max=0)) + s.ub
    lo = _vm(xl, s.lc.clamp(min=0)) + _vm(xu, s.lc.clamp(max=0)) + s.lb
    g, scale = tn.g, 1.0 + 4.0 * tn.g
    hi = hi + (2.0 * g * (_vm(xmax, s.uc.abs()) + s.ub.abs()) + s.eu * scale + TINY)
    lo = lo - (2.0 * g * (_vm(xmax, s.lc.abs()) + s.lb.abs()) + s.el * scale + TINY)
    return lo, hi


def _fwd_relu(tn: TorchNet, s: _Linear, r: Relax, xmax: torch.Tensor) -> _Linear:
    uc, lc = s.uc * r.su.unsqueeze(1), s.lc * r.sl.unsqueeze(1)
    ub_scaled, lb = s.ub * r.su, s.lb * r.sl
    mag_u = _vm(xmax, uc.abs()) + ub_scaled.abs() + r.tu
    mag_l = _vm(xmax, lc.abs()) + lb.abs()
    scale = 1.0 + 4.0 * tn.g
    return _Linear(uc, ub_scaled + r.tu, lc, lb, (s.eu * r.su + 4.0 * U * mag_u) * scale,
                   (s.el * r.sl + 4.0 * U * mag_l) * scale)


@dataclass
class Collect:
    """What a back-substitution also hands back, where asked: per hidden layer the
    coefficients reaching it (``coefficients[j]``) and the final input coefficients."""

    coefficients: list[torch.Tensor] | None = None
    input_slopes: list[torch.Tensor] | None = None


def backsub(tn: TorchNet, rows: Rows, relaxed: list[Relax], box: Box,
            params: Params | None = None, *, mass: torch.Tensor | None = None,
            collect: Collect | None = None) -> torch.Tensor:
    """Upper bounds ``(B, R)`` of the rows ``a @ h_{k-1} + const`` (``a`` is ``(B, R, w)``,
    ``k = len(relaxed)``). With ``mass`` (the magnitude of what was rounded before) the margin
    is added and the result is sound; without, it is the plain float value (for optimising).
    ``params``: per layer dense ``(B, R, w)`` lower slopes and split multipliers."""
    a, const = rows
    alphas, betas = params if params is not None else (None, None)
    coefficients = collect.coefficients if collect is not None else None
    for j in reversed(range(len(relaxed))):
        r = relaxed[j]
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
            const = const + bmv(a_pos, r.tu)
        else:  # |g| <= a_pos su - a_neg (slopes in [0, 1])
            terms = a_pos @ r.terms
            const = const + terms[..., 0]
            mass = mass + terms[..., 1] - bmv(a_neg, r.mag)
    if collect is not None and collect.input_slopes is not None:
        collect.input_slopes.append(a)
    return _concretize(tn, a, const, box, mass)


def _concretize(tn: TorchNet, a: torch.Tensor, const: torch.Tensor, box: Box,
                mass: torch.Tensor | None) -> torch.Tensor:
    """The maximum of ``a @ x + const`` over the box, plus the margin where ``mass`` is given."""
    xl, xu = box
    a_pos = a.clamp(min=0)
    a_neg = a - a_pos
    val = bmv(a_pos, xu) + bmv(a_neg, xl) + const
    if mass is None:
        return val
    xmax = torch.maximum(xl.abs(), xu.abs())
    mass = mass + bmv(a_pos, xmax) - bmv(a_neg, xmax)
    return val + (2.0 * (tn.g + U) * mass + TINY)


def _refine(tn: TorchNet, k: int, bounds: Box, relaxed: list[Relax], box: Box) -> Box:
    """Tighten the still unstable neurons of layer ``k`` by back-substitution: one row per
    unstable neuron, boxes grouped by their number of unstable neurons to limit padding."""
    lo, hi = bounds
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
        bound = backsub(tn, (torch.cat([rows, -rows], dim=1), torch.cat([bias, -bias], dim=1)),
                        [r.take(boxes) for r in relaxed], (box[0][boxes], box[1][boxes]),
                        mass=torch.zeros(len(boxes), 2 * width, dtype=torch.float64,
                                         device=tn.device))
        hi[boxes] = hi[boxes].scatter_reduce(1, idx, torch.where(valid, bound[:, :width], inf),
                                             reduce="amin")
        lo[boxes] = lo[boxes].scatter_reduce(1, idx, torch.where(valid, -bound[:, width:], -inf),
                                             reduce="amax")
    return lo, hi


@dataclass(frozen=True)
class Intermediate:
    """Every hidden layer's relaxation and pre-activation bounds (split clamps applied), the
    boxes whose splits contradict each other, and the output pre-activation's magnitude."""

    relaxed: list[Relax]
    layers: list[Box]
    infeasible: torch.Tensor
    mag: torch.Tensor


def _forward_start(tn: TorchNet, box: Box) -> _Linear | None:
    """The input as forward linear bounds, for inputs of up to FORWARD_MAX_INPUTS values."""
    xl = box[0]
    if tn.in_size > FORWARD_MAX_INPUTS:
        return None
    eye = torch.eye(tn.in_size, dtype=torch.float64, device=tn.device).expand(len(xl), -1, -1)
    zero = torch.zeros_like(xl)
    return _Linear(eye, zero, eye, zero, zero, zero)


def intermediate(tn: TorchNet, box: Box, splits: list[torch.Tensor | None]) -> Intermediate:
    """Bound every hidden layer in order: intervals, intersected with forward linear bounds,
    the unstable neurons tightened by back-substitution, split signs clamped in."""
    relaxed: list[Relax] = []
    layers: list[Box] = []
    infeasible = torch.zeros(box[0].shape[0], dtype=torch.bool, device=tn.device)
    xmax = torch.maximum(box[0].abs(), box[1].abs())
    fwd = _forward_start(tn, box)
    hl, hu = box
    for k in range(len(tn.hidden_sizes)):
        lo, hi, mag = affine_interval(tn, k, hl, hu)
        if fwd is not None:
            fwd = _fwd_affine(tn, k, fwd, xmax)
            if k > 0:
                flo, fhi = _fwd_concretize(tn, fwd, box, xmax)
                lo, hi = torch.maximum(lo, flo), torch.minimum(hi, fhi)
        if k > 0:
            lo, hi = _refine(tn, k, (lo, hi), relaxed, box)
        s = splits[k]
        if s is not None:
            lo = torch.where(s > 0, lo.clamp(min=0), lo)
            hi = torch.where(s < 0, hi.clamp(max=0), hi)
            bad = lo > hi
            infeasible |= bad.any(dim=1)
            hi = torch.where(bad, lo, hi)
        layers.append((lo, hi))
        relaxed.append(relax(lo, hi, mag, s))
        if fwd is not None:
            fwd = _fwd_relu(tn, fwd, relaxed[-1], xmax)
        hl, hu = lo.clamp(min=0), hi.clamp(min=0)
    _, _, mag = affine_interval(tn, len(tn.hidden_sizes), hl, hu)
    return Intermediate(relaxed, layers, infeasible, mag)
