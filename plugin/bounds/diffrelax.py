"""Linear relaxations of one layer of the joint network ``(z1, z2, dz) -> (h1, h2, dh)``.

``h1 = relu(z1)``, ``h2 = relu(z2)`` and ``dh = relu(z1) - relu(z2)`` are each bounded by a lower
and an upper linear function of ``(z1, z2, dz)`` that hold on the neuron's concrete bounds of
``z1``, ``z2`` and ``dz = z1 - z2``; every coefficient is rounded so that the lines hold in exact
arithmetic with the stored float64 numbers (``tests/plugin/test_diffbounds.py`` checks them with
rationals at every vertex of the pieces).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbisim.bounds.fp import TINY, U, down, up, widen

T = torch.Tensor


@dataclass(frozen=True)
class Relax:
    """Linear bounds of ``(h1, h2, dh)`` in terms of ``(z1, z2, dz)`` of one layer, per neuron,
    valid on its concrete bounds: ``mu z <= relu(z) <= lam z + beta`` for each network and
    ``dl . (z1, z2, dz) + dl0 <= dh <= du . (z1, z2, dz) + du0`` (``dl``, ``du``: 3 tensors).
    ``umax`` bounds |z1|, |z2|, |dz| and ``vbounds`` are the bounds of h1, h2, dh."""

    mu1: T
    lam1: T
    beta1: T
    mu2: T
    lam2: T
    beta2: T
    dl: tuple[T, T, T]
    dl0: T
    du: tuple[T, T, T]
    du0: T
    uses_z2: bool  # does any dh line involve z2?
    umax: tuple[T, T, T]
    vbounds: tuple[tuple[T, T], tuple[T, T], tuple[T, T]]

    @property
    def vmax(self) -> tuple[T, T, T]:
        return tuple(torch.maximum(lo.abs(), hi.abs()) for lo, hi in self.vbounds)


def relu_lines(a: T, b: T) -> tuple[T, T, T]:
    """``mu z <= relu(z) <= lam z + beta`` on ``[a, b]``: identity if ``a >= 0``, zero if
    ``b <= 0``; otherwise the chord through ``(a, 0)`` and ``(b, b)`` (slope rounded up to
    ``lam >= b / (b - a)`` and intercept up to ``beta >= -lam a``: the line stays above relu at
    both ends, hence on [a, b]) and the lower line ``s z`` with s = 1 if ``b >= -a`` else 0
    (relu(z) >= z and relu(z) >= 0), as CROWN does."""
    act, dead = a >= 0, b <= 0
    unstable = ~act & ~dead
    den = down(torch.where(unstable, b - a, torch.ones_like(a)))  # <= b - a
    lam = torch.where(unstable, up(b / den), act.to(a.dtype))
    mu = torch.where(unstable, (b >= -a).to(a.dtype), lam)
    beta = torch.where(unstable, up(-lam * a), torch.zeros_like(a))
    return mu, lam, beta


def envelope(a1: T, b1: T, a2: T, b2: T, p: T, upper: bool) -> T:
    """Exact max (``upper``) or min of ``relu(z2 + p) - relu(z2)`` over the z2 that are feasible
    with ``dz = p``: ``z2 in [a2, b2]`` and ``z1 = z2 + p in [a1, b1]``.

    For fixed ``p >= 0``, ``g(z2) = relu(z2 + p) - relu(z2) = clamp(z2 + p, 0, p)`` is
    non-decreasing in z2; for ``p < 0``, ``g(z2) = -clamp(z2, 0, -p)`` is non-increasing. So the
    extremes sit at the ends ``max(a2, a1 - p)`` and ``min(b2, b1 - p)`` of the feasible z2
    range. The result is continuous and piecewise linear in ``p``, slopes in {0, 1}, kinks only
    at ``0, a1 - a2, -a2, a1, b1 - b2, b1, -b2``.
    """
    a1, b1, a2, b2 = (t.unsqueeze(-1) for t in (a1, b1, a2, b2))
    if upper:  # largest z2 for p >= 0, smallest for p < 0
        pos = torch.minimum(torch.minimum(b2 + p, b1).clamp(min=0), p)
        neg = -torch.minimum(torch.maximum(a2, a1 - p).clamp(min=0), -p)
    else:
        pos = torch.minimum(torch.maximum(a2 + p, a1).clamp(min=0), p)
        neg = -torch.minimum(torch.minimum(b2, b1 - p).clamp(min=0), -p)
    return torch.where(p >= 0, pos, neg)


def envelope_line(a1: T, b1: T, a2: T, b2: T, dlo: T, dhi: T, upper: bool
                   ) -> tuple[T, T, T]:
    """A line ``s * dz + t`` above (``upper``) or below ``dh`` for ``dz in [dlo, dhi]``, and
    the constant bound ``t0`` (the envelope's max or min there).

    Soundness: the envelope E is piecewise linear, so a line below E at every kink and at both
    ends is below E on the whole interval. The slope s is one of {chord, 0, 1} (the best mean
    over the interval); t is the min of ``E(p) - s p`` over those points. Rounding: the kinks
    ``a1 - a2``, ``b1 - b2`` are off by <= 2uS (S = the largest magnitude among a1, b1, a2, b2,
    dlo, dhi); E is 1-Lipschitz and |s| <= 1, so evaluating at the rounded kinks costs <= 4uS;
    evaluating E (one addition) <= 3uS, ``E(p) - s p`` <= 3uS. 32uS covers the sum; none is
    needed where dlo = dhi = 0 (then dz = 0 and dh = 0 exactly).
    """
    zero = torch.zeros_like(dlo)
    pts = torch.stack([dlo, dhi, zero, a1 - a2, -a2, a1, b1 - b2, b1, -b2], dim=-1)
    pts = torch.minimum(torch.maximum(pts, dlo.unsqueeze(-1)), dhi.unsqueeze(-1))
    env = envelope(a1, b1, a2, b2, pts, upper)
    width = dhi - dlo
    safe = torch.where(width > 0, width, torch.ones_like(width))
    chord = torch.where(width > 0, (env[..., 1] - env[..., 0]) / safe, torch.zeros_like(width))
    slopes = torch.stack([chord.clamp(-1.0, 1.0), zero, torch.ones_like(dlo)], -1)
    gaps = env.unsqueeze(-2) - slopes.unsqueeze(-1) * pts.unsqueeze(-2)  # (B, n, 3, 9)
    t = gaps.amax(-1) if upper else gaps.amin(-1)
    mean = slopes * ((dlo + dhi) / 2).unsqueeze(-1) + t
    pick = (mean.argmin(-1) if upper else mean.argmax(-1)).unsqueeze(-1)
    s, t = slopes.gather(-1, pick).squeeze(-1), t.gather(-1, pick).squeeze(-1)
    scale = torch.stack([x.abs() for x in (a1, b1, a2, b2, dlo, dhi)]).amax(0)
    m = torch.where((dlo == 0) & (dhi == 0), torch.zeros_like(scale), 32 * U * scale + TINY)
    t0 = env.amax(-1) if upper else env.amin(-1)
    return s, widen(t, m, not upper), widen(t0, m, not upper)


def relaxation(a1: T, b1: T, a2: T, b2: T, dlo: T, dhi: T) -> Relax:
    """Relaxations of one layer from the concrete bounds of z1, z2 and dz.

    ``dh = relu(z1) - relu(z2)`` is exact where both neurons are stably active (``dz``) or
    stably inactive (0); elsewhere each side picks one of two sound candidates per neuron:
    (a) a line in ``dz`` under/over the exact envelope of dh given the three intervals
    (:func:`envelope_line`): both unstable lies within ``[min(0, dz), max(0, dz)]`` (relu is
    monotone and 1-Lipschitz) and gives NeuroDiff's chords ``u (dz - l) / (u - l)`` and
    ``l (u - dz) / (u - l)`` for ``dz in [l, u]``; mixed cases (e.g. z1 active:
    ``dh = min(z1, dz)``) follow from the same envelope;
    (b) ``relu(z1) - relu(z2)`` with each network's own lines (lower: mu1 z1 - lam2 z2 - beta2),
    exact when one neuron is stably active and the other stably inactive (``dh = z1`` or
    ``-z2``, e.g. a pruned neuron of N2). (b) is taken there, and elsewhere only when its
    interval value over the layer's bounds is strictly better than (a)'s. Only the neurons that
    are not exact are computed (few, on small boxes).
    """
    mu1, lam1, beta1 = relu_lines(a1, b1)
    mu2, lam2, beta2 = relu_lines(a2, b2)
    opposite = ((a1 >= 0) & (b2 <= 0)) | ((b1 <= 0) & (a2 >= 0))
    both_active = (a1 >= 0) & (a2 >= 0) & ~opposite
    hard = ~(both_active | ((b1 <= 0) & (b2 <= 0))) | opposite
    zero = torch.zeros_like(a1)
    ones = both_active.to(a1.dtype)
    dl, du = [zero, zero.clone(), ones], [zero.clone(), zero.clone(), ones.clone()]
    dl0, du0 = zero.clone(), zero.clone()
    vd = [torch.where(both_active, dlo, zero), torch.where(both_active, dhi, zero)]
    uses_z2 = False
    if bool(hard.any()):
        def pick(*ts: T) -> tuple[T, ...]:
            return tuple(t[hard] for t in ts)

        parts = _hard_lines(pick(a1, b1, a2, b2, dlo, dhi), pick(mu1, lam1, beta1),
                            pick(mu2, lam2, beta2), opposite[hard])
        for target, value in zip((*dl, *du, dl0, du0, *vd), parts[:-1], strict=True):
            target[hard] = value
        uses_z2 = parts[-1]
    umax = tuple(torch.maximum(x.abs(), y.abs()) for x, y in ((a1, b1), (a2, b2), (dlo, dhi)))
    vbounds = ((a1.clamp(min=0), b1.clamp(min=0)), (a2.clamp(min=0), b2.clamp(min=0)),
               (vd[0], vd[1]))
    return Relax(mu1, lam1, beta1, mu2, lam2, beta2, tuple(dl), dl0, tuple(du), du0,
                 uses_z2, umax, vbounds)


def _hard_lines(bounds: tuple[T, ...], lines1: tuple[T, T, T], lines2: tuple[T, T, T],
                opposite: T) -> tuple:
    """The dh lines of :func:`relaxation` for the neurons that are not exact (flat tensors),
    given their bounds ``(a1, b1, a2, b2, dlo, dhi)`` and each network's relu lines
    ``(mu, lam, beta)``: ``dl`` (3), ``du`` (3), ``dl0``, ``du0``, dh's bounds (2), and whether
    any line uses z2."""
    a1, b1, a2, b2, dlo, dhi = bounds
    (mu1, lam1, beta1), (mu2, lam2, beta2) = lines1, lines2
    zero = torch.zeros_like(a1)
    sl, tl, t0l = envelope_line(a1, b1, a2, b2, dlo, dhi, upper=False)
    su, tu, t0u = envelope_line(a1, b1, a2, b2, dlo, dhi, upper=True)
    a_lo = torch.where(sl >= 0, sl * dlo, sl * dhi) + tl
    b_lo = mu1 * a1 - lam2 * b2 - beta2
    a_hi = torch.where(su >= 0, su * dhi, su * dlo) + tu
    b_hi = lam1 * b1 - mu2 * a2 + beta1
    take_lo = opposite | (b_lo > a_lo)
    take_hi = opposite | (b_hi < a_hi)
    return (torch.where(take_lo, mu1, zero), torch.where(take_lo, -lam2, zero),
            torch.where(take_lo, zero, sl), torch.where(take_hi, lam1, zero),
            torch.where(take_hi, -mu2, zero), torch.where(take_hi, zero, su),
            torch.where(take_lo, -beta2, tl), torch.where(take_hi, beta1, tu), t0l, t0u,
            bool((take_lo | take_hi).any()))
