"""Outward rounding for sound float64 bounds: the one rounding vocabulary of the engines.

A float64 sum of ``n`` products differs from its exact value by at most
``gamma(n) * (sum of the magnitudes of the products)``, ``gamma(n) = n U / (1 - n U)``,
``U = 2**-53``, in any summation order, with or without fused multiply-add. The bound engines add
such margins to every bound they compute and round the result one step outward; ``TINY`` covers
underflow wherever a margin is non-zero.
"""

from __future__ import annotations

import torch

U = 2.0**-53  # unit roundoff of float64
TINY = 2.0**-1000  # absolute slack against underflow, added wherever a margin is non-zero

T = torch.Tensor


def gamma(n: int) -> float:
    """``n U / (1 - n U)``: the relative rounding bound of a float64 dot product of length n."""
    return n * U / (1.0 - n * U)


def gamma2(n: int) -> float:
    """Twice :func:`gamma`; the doubling covers the rounding of the margin computation itself."""
    return 2.0 * gamma(n)


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
