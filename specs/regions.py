"""Input sets from the command line: bound vectors, or a centre and radius clipped to a domain."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.specs.sets import Box, InputSet

__all__ = ["ball", "bounds", "parse_vector"]

Vector = Sequence[float] | np.ndarray


def parse_vector(text: str, what: str = "vector", expected: int | None = None) -> np.ndarray:
    """Comma-separated numbers (optionally in ``[...]``) as a float64 vector.

    ``what`` names the argument in errors (e.g. ``"--lower"``); ``expected`` is the number of
    values it must have, when known.
    """
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    items = [s.strip() for s in body.split(",")]
    if not body.strip() or any(not s for s in items):
        raise SpecError(f"{what}: {text!r} has an empty entry; give comma-separated numbers "
                        "like 0.1,0.2,0.3")
    values = []
    for k, item in enumerate(items):
        try:
            v = float(item)
        except ValueError:
            raise SpecError(f"{what}: entry {k + 1} ({item!r}) is not a number; give "
                            "comma-separated numbers like 0.1,0.2,0.3") from None
        if not np.isfinite(v):
            raise SpecError(f"{what}: entry {k + 1} ({item!r}) is not finite; give finite "
                            "numbers")
        values.append(v)
    if expected is not None and len(values) != expected:
        raise SpecError(f"{what}: has {len(values)} values but {expected} are needed; give one "
                        "per input")
    return np.array(values, dtype=np.float64)


def _vector(v: Vector, what: str, expected: int | None) -> np.ndarray:
    a = np.array(v, dtype=np.float64).reshape(-1)
    if expected is not None and a.size != expected:
        raise SpecError(f"{what} has {a.size} values but {expected} are needed; give one per "
                        "input")
    return a


def bounds(lower: Vector, upper: Vector, dim: int | None = None) -> InputSet:
    """The box ``lower <= x <= upper`` as an input set (``dim``: the size it must have)."""
    return InputSet.of(Box(_vector(lower, "lower", dim), _vector(upper, "upper", dim)))


def ball(center: Vector, radius: float | Vector, domain: Box | None = None,
         dim: int | None = None) -> InputSet:
    """The L-infinity ball ``|x - center| <= radius`` clipped to ``domain``, as an input set.

    ``radius`` is one value or one per input. Clipping that leaves nothing is an error.
    """
    c = _vector(center, "centre", dim)
    r = np.array(radius, dtype=np.float64).reshape(-1)
    if r.size not in (1, c.size):
        raise SpecError(f"radius has {r.size} values but the centre has {c.size}; give one "
                        "radius or one per input")
    if domain is not None and domain.dim == c.size:
        outside = np.flatnonzero((c + r < domain.lower) | (c - r > domain.upper))
        if outside.size:
            i = int(outside[0])
            raise SpecError(f"the ball around the centre lies outside the domain at input {i}; "
                            "move the centre into the domain or widen the radius")
    return InputSet.of(Box.from_center(c, r if r.size > 1 else float(r[0]), domain))
