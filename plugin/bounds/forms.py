"""Forward linear forms of two networks' pre-activations in a box's input (symbolic intervals).

For inputs of few dimensions the cheapest good concrete bounds of every neuron come from pushing
a lower and an upper linear function of the input forward, layer by layer, as ReluVal and
Neurify do. Both networks and both sides travel in one tensor ``F`` of shape ``(B, 4n, d + 1)``:
rows ``[lower N1; upper N1; lower N2; upper N2]`` of a layer, columns the coefficients on the
centred coordinates ``e`` in ``[-1, 1]^d`` of the box (``x = c + r e``) and the constant.

Invariant: each stored form, evaluated in exact arithmetic with its stored float64 coefficients,
bounds its neuron on the whole box. Every step adds the rounding bound of its own arithmetic to
the constant, outward (``gamma_N`` times the magnitudes of the terms, see :mod:`nnbisim.bounds.fp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbisim.bounds.fp import TINY, down, gamma2, up

T = torch.Tensor


@dataclass(frozen=True)
class FormLayer:
    """One affine layer acting on stacked forms: ``M`` maps ``[lo1; hi1; lo2; hi2]`` of the
    layer below to this layer's (the upper side takes ``W+`` on upper forms and ``W-`` on lower
    ones), ``M_abs = |M|``, ``bias`` the biases, ``upper`` marks the rows of upper forms."""

    m: T
    m_abs: T
    bias: T
    upper: T
    n_in: int

    @classmethod
    def of(cls, w1: T, b1: T, w2: T, b2: T) -> FormLayer:
        def block(w: T) -> T:
            p, q = w.clamp(min=0), w.clamp(max=0)
            return torch.cat([torch.cat([p, q], 1), torch.cat([q, p], 1)])
        z = torch.zeros(2 * w1.shape[0], 2 * w1.shape[1], dtype=w1.dtype, device=w1.device)
        m = torch.cat([torch.cat([block(w1), z], 1), torch.cat([z, block(w2)], 1)])
        n = int(w1.shape[0])
        upper = torch.zeros(4 * n, dtype=torch.bool, device=w1.device)
        upper[n:2 * n] = True
        upper[3 * n:] = True
        return cls(m, m.abs(), torch.cat([b1, b1, b2, b2]), upper, int(w1.shape[1]))


def _mass(f: T) -> T:
    return f.abs().sum(-1)


def _shift(f: T, m: T, upper: T) -> T:
    """``m`` (>= 0) added to the constants of upper rows, taken from lower rows, outward."""
    c = f[..., -1]
    moved = torch.where(upper, c + m, c - m)
    moved = torch.nextafter(moved, torch.where(upper, torch.inf, -torch.inf).expand_as(moved))
    f[..., -1] = torch.where(m > 0, moved, c)
    return f


def input_forms(lo: T, hi: T) -> T:
    """The input ``x = c + r e`` four times; ``c`` and ``r`` rounded so that ``[c - r, c + r]``
    contains the box."""
    c = (lo + hi) / 2
    r = up(torch.maximum(up(hi - c), up(c - lo)))
    f = torch.zeros(*lo.shape, lo.shape[1] + 1, dtype=lo.dtype, device=lo.device)
    f[..., :-1] = torch.diag_embed(r)
    f[..., -1] = c
    return f.repeat(1, 4, 1)


def affine(f: T, layer: FormLayer) -> T:
    """Forms of ``W h + b`` for both networks; a coefficient is a sum of ``n + 1`` products."""
    boxes, rows, k = f.shape  # one matrix product for all boxes, not one per box
    out = (f.transpose(1, 2).reshape(boxes * k, rows) @ layer.m.T).reshape(boxes, k, -1)
    out = out.transpose(1, 2).contiguous()
    out[..., -1] += layer.bias
    m = gamma2(2 * layer.n_in + 2) * (_mass(f) @ layer.m_abs.T + layer.bias.abs()) + TINY
    return _shift(out, m, layer.upper)


def bounds(f: T) -> tuple[T, T]:
    """Min and max of every form over the box (B, 4n), rounded outward."""
    spread = f[..., :-1].abs().sum(-1)
    c = f[..., -1]
    m = torch.where(spread > 0, gamma2(int(f.shape[-1]) + 1) * _mass(f) + TINY,
                    torch.zeros_like(spread))
    lo = torch.where(m > 0, down(c - spread - m), c)
    hi = torch.where(m > 0, up(c + spread + m), c)
    return lo, hi


def relu(f: T, fmin: T, fmax: T, active: T, dead: T, upper: T) -> T:
    """Forms of ``relu`` of every row, given the rows' ranges ``fmin``, ``fmax`` and which
    neurons the concrete bounds prove active or dead (B, 4n).

    Upper rows: ``relu(z) <= relu(U)``, and where U's range ``[ul, uh]`` crosses 0 the chord
    ``lam (U - ul)`` with ``lam >= uh / (uh - ul)`` (a line through ``(ul, 0)`` at least as
    steep as the chord stays above relu on ``[ul, uh]``). Lower rows: ``relu(z) >= mu L`` for
    any ``mu`` in ``[0, 1]``, here ``lh / (lh - ll)`` (parallel to the chord, as Neurify).
    """
    one, zero = torch.ones_like(fmin), torch.zeros_like(fmin)
    cross = (fmin < 0) & (fmax > 0) & ~active & ~dead
    width = torch.where(cross, fmax - fmin, one)
    lam = up(fmax / down(width))
    mu = (fmax / width).clamp(0.0, 1.0)
    flat = torch.where(dead | (fmax <= 0), zero, one)
    scale = torch.where(cross, torch.where(upper, lam, mu), flat)
    shift = torch.where(cross & upper, -lam * fmin, zero)
    out = f * scale.unsqueeze(-1)
    out[..., -1] += shift
    m = torch.where(cross, gamma2(3) * (scale * _mass(f) + shift) + TINY, zero)
    return _shift(out, m, upper)
