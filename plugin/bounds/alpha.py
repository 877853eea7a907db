"""Optimised CROWN: projected Adam on the lower ReLU slopes (alpha) and the multipliers of
ReLU splits (beta), per row. Any alpha in ``[0, 1]`` and beta ``>= 0`` gives a valid bound, so
optimising only tightens; the sound margin is added afterwards (:mod:`nnbisim.bounds.crown`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nnbisim.bounds.crown_relax import (
    Box,
    Collect,
    Intermediate,
    Params,
    Relax,
    Rows,
    TorchNet,
    backsub,
    bmv,
)

ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8  # torch's defaults
# 1 - ADAM_BETA1 and 1 - ADAM_BETA2 as written (the subtraction would round 0.1 down a step)
_NEW1, _NEW2 = 0.1, 0.001
# plain CROWN upper bounds (B, K) -> indices (B, k) of the rows to optimise
Focus = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Tuning:
    """What to optimise and how: lower slopes (``alpha``), split multipliers (``beta``),
    ``iters`` Adam steps at the learning rates alpha-CROWN and beta-CROWN use."""

    alpha: bool
    beta: bool
    iters: int
    alpha_lr: float = 0.1
    beta_lr: float = 0.05


class Adam:
    """Adam (torch's defaults) on groups of tensors with a learning rate each, by hand:
    ``torch.optim.Adam``'s first construction in a process imports torch._dynamo, a start-up
    cost each process would pay for a few dozen small steps."""

    def __init__(self, groups: list[tuple[list[torch.Tensor], float]]):
        self.params = [p for ps, _ in groups for p in ps]
        self.lrs = [lr for ps, lr in groups for _ in ps]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: tuple[torch.Tensor | None, ...]) -> None:
        self.t += 1
        c1, c2 = 1 - ADAM_BETA1 ** self.t, 1 - ADAM_BETA2 ** self.t
        with torch.no_grad():
            for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lrs, strict=True):
                if g is None:
                    continue
                m.mul_(ADAM_BETA1).add_(g, alpha=_NEW1)
                v.mul_(ADAM_BETA2).addcmul_(g, g, value=_NEW2)
                p.addcdiv_(m, (v.sqrt() / c2 ** 0.5).add_(ADAM_EPS), value=-lr / c1)


Sparse = list[tuple[int, tuple[torch.Tensor, ...], torch.Tensor]]  # (layer, where, values)


def _initial(tn: TorchNet, relaxed: list[Relax], shape: torch.Size, tuning: Tuning,
             start: Params | None) -> tuple[Sparse, Sparse]:
    """The free parameters, stored sparsely: slopes of unstable neurons, multipliers of split
    neurons, per row, from ``start`` (dense) or CROWN's choice and zero."""
    start_a, start_b = start or (None, None)
    par_a: Sparse = []
    par_b: Sparse = []
    for j, r in enumerate(relaxed):
        if tuning.alpha:
            w = r.unstable.nonzero(as_tuple=True)
            init = (r.sl[w].unsqueeze(1).expand(-1, shape[1]) if start_a is None
                    else start_a[j][w[0], :, w[1]].clamp(0.0, 1.0))
            par_a.append((j, w, init.detach().clone().requires_grad_()))
        if tuning.beta and r.split is not None:
            w = (r.split != 0).nonzero(as_tuple=True)
            init = (torch.zeros(len(w[0]), shape[1], dtype=torch.float64, device=tn.device)
                    if start_b is None or start_b[j] is None
                    else start_b[j][w[0], :, w[1]].clamp(min=0.0))
            par_b.append((j, w, init.detach().clone().requires_grad_()))
    return par_a, par_b


def _dense(relaxed: list[Relax], shape: torch.Size, sparse: tuple[Sparse, Sparse],
           values: tuple[list[torch.Tensor], list[torch.Tensor]], use_alpha: bool) -> Params:
    """The sparse parameters ``values`` as dense ``(B, R, w)`` tensors per layer."""
    (par_a, par_b), (pa, pb) = sparse, values
    alphas = [r.sl.unsqueeze(1).expand(*shape, -1) for r in relaxed]
    betas: list[torch.Tensor | None] = [None] * len(relaxed)
    for (j, w, _), p in zip(par_a, pa, strict=True):
        alphas[j] = alphas[j].clone()
        alphas[j][w[0], :, w[1]] = p
    for (j, w, _), p in zip(par_b, pb, strict=True):
        betas[j] = torch.zeros(*shape, relaxed[j].sl.shape[1], dtype=torch.float64,
                               device=p.device)
        betas[j][w[0], :, w[1]] = p
    return (alphas if use_alpha else None), (betas if par_b else None)


def optimise(tn: TorchNet, rows: Rows, relaxed: list[Relax], box: Box, tuning: Tuning,
             feasible: torch.Tensor, start: Params | None) -> Params:
    """Projected Adam on the free slopes and multipliers of ``rows``; the best per row, dense
    ``(B, R, w)`` tensors."""
    shape = rows[0].shape[:2]
    sparse = _initial(tn, relaxed, shape, tuning, start)
    params_a, params_b = [p for _, _, p in sparse[0]], [p for _, _, p in sparse[1]]
    groups = [(ps, lr) for ps, lr in ((params_a, tuning.alpha_lr), (params_b, tuning.beta_lr))
              if ps]
    opt = Adam(groups) if groups else None
    best = torch.full(shape, float("inf"), dtype=torch.float64, device=tn.device)
    keep = ([p.detach().clone() for p in params_a], [p.detach().clone() for p in params_b])
    for it in range(tuning.iters + 1):
        val = backsub(tn, rows, relaxed, box,
                      _dense(relaxed, shape, sparse, (params_a, params_b), tuning.alpha))
        with torch.no_grad():
            better = val < best
            best = torch.minimum(best, val)
            for kept, cur, par in zip(keep, (params_a, params_b), sparse, strict=True):
                for i, p in enumerate(cur):
                    kept[i] = torch.where(better[par[i][1][0]], p.detach(), kept[i])
        if it == tuning.iters or opt is None:
            break
        grads = torch.autograd.grad(val[feasible].sum(), opt.params, allow_unused=True)
        opt.step(grads)
        with torch.no_grad():
            for p in params_a:
                p.clamp_(0.0, 1.0)
            for p in params_b:
                p.clamp_(min=0.0)
    with torch.no_grad():
        return _dense(relaxed, shape, sparse, keep, tuning.alpha)


def focused(tn: TorchNet, inter: Intermediate, box: Box, spec_rows: torch.Tensor,
            bound: torch.Tensor, focus: Focus, tuning: Tuning,
            found: list[torch.Tensor] | None) -> torch.Tensor:
    """``bound`` (B, K) with the rows ``focus`` picks re-bounded with optimised lower slopes
    (each the smaller of its two sound bounds); ``found[0]``, the input slopes, updated where
    the optimised bound won."""
    idx = focus(bound).to(device=tn.device, dtype=torch.long)
    if not inter.relaxed or idx.numel() == 0:
        return bound
    sub = spec_rows.gather(1, idx.unsqueeze(-1).expand(-1, -1, spec_rows.shape[-1]))  # (B,k,m)
    rows = (sub @ tn.weights[-1], sub @ tn.biases[-1])
    with torch.enable_grad():
        alphas, _ = optimise(tn, rows, inter.relaxed, box, tuning, ~inter.infeasible, None)
    slopes: list[torch.Tensor] | None = [] if found is not None else None
    better = backsub(tn, rows, inter.relaxed, box, (alphas, None),
                     mass=bmv(sub.abs(), inter.mag), collect=Collect(None, slopes))
    old = bound.gather(1, idx)
    win = better < old
    bound = bound.scatter(1, idx, torch.where(win, better, old))
    if found is not None and slopes:
        n = found[0].shape[-1]
        where = idx.unsqueeze(-1).expand(-1, -1, n)
        mixed = torch.where(win.unsqueeze(-1), slopes[0], found[0].gather(1, where))
        found[0] = found[0].scatter(1, where, mixed)
    return bound
