"""Outward rounding for sound float64 bounds, on tensors: the engines add margins of
:mod:`nnbisim.core.rounding`'s vocabulary (``U``, ``TINY``, ``gamma``, ``gamma2``, re-exported
here) to every bound they compute and round the result one step outward.
"""

from __future__ import annotations

import torch

from nnbisim.core.rounding import TINY, U, gamma, gamma2

__all__ = ["TINY", "U", "down", "gamma", "gamma2", "margin", "round_up", "up", "widen"]

T = torch.Tensor


def down(t: T) -> T:
    return torch.nextafter(t, torch.full_like(t, -torch.inf))


def up(t: T) -> T:
    return torch.nextafter(t, torch.full_like(t, torch.inf))


def round_up(x: T, steps: int) -> T:
    """``x`` moved ``steps`` floats towards +inf."""
    inf = torch.full_like(x, float("inf"))
    for _ in range(steps):
        x = torch.nextafter(x, inf)
    return x


def widen(v: T, margin: T, lower: bool) -> T:
    """``v - margin`` (lower) or ``v + margin`` rounded outward; ``v`` itself where margin is 0
    (a zero margin means every term was zero, so ``v`` is exact)."""
    if lower:
        return torch.where(margin > 0, down(v - margin), v)
    return torch.where(margin > 0, up(v + margin), v)


def margin(total: T, n: int) -> T:
    """Rounding margin of sums of ``n`` products whose absolute values sum to ``total``."""
    return torch.where(total > 0, gamma2(n) * total + TINY, torch.zeros_like(total))
