"""The rounding vocabulary of every sound computation in nnbisim (pure numbers, no arrays).

A float64 sum of ``n`` products differs from its exact value by at most
``gamma(n) * (sum of the magnitudes of the products)``, ``gamma(n) = n U / (1 - n U)``,
``U = 2**-53``, in any summation order, with or without fused multiply-add. ``TINY`` covers
underflow wherever a margin is non-zero. The bound engines' tensor operations on top of these
(outward steps, margins) are in :mod:`nnbisim.bounds.fp`.
"""

from __future__ import annotations

U = 2.0**-53  # unit roundoff of float64
TINY = 2.0**-1000  # absolute slack against underflow, added wherever a margin is non-zero


def gamma(n: int) -> float:
    """``n U / (1 - n U)``: the relative rounding bound of a float64 dot product of length n."""
    return n * U / (1.0 - n * U)


def gamma2(n: int) -> float:
    """Twice :func:`gamma`; the doubling covers the rounding of the margin computation itself."""
    return 2.0 * gamma(n)
