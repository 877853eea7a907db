"""Input sets and output constraints: the shape ``[(box, [(mat, rhs), ...])]`` given names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnbisim.core.errors import SpecError


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``lower <= x <= upper`` over the flattened input, float64."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.array(self.lower, dtype=np.float64).reshape(-1)
        hi = np.array(self.upper, dtype=np.float64).reshape(-1)
        if lo.shape != hi.shape:
            raise SpecError(
                f"box bounds have {lo.size} lower and {hi.size} upper values; give one of each "
                "per input"
            )
        if lo.size == 0:
            raise SpecError("box has no dimensions; give at least one lower/upper pair")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise SpecError("box bounds must be finite numbers; bound every input on both sides")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise SpecError(
                f"box is empty: input {i} has lower {lo[i]:g} > upper {hi[i]:g}; swap or widen "
                "the bounds"
            )
        object.__setattr__(self, "lower", _frozen(lo))
        object.__setattr__(self, "upper", _frozen(hi))

    @classmethod
    def from_center(
        cls,
        center: Sequence[float] | np.ndarray,
        radius: float | Sequence[float] | np.ndarray,
        domain: Box | None = None,
    ) -> Box:
        """The L-infinity ball ``|x - center| <= radius``, clipped to ``domain`` if given."""
        c = np.array(center, dtype=np.float64).reshape(-1)
        r = np.broadcast_to(np.array(radius, dtype=np.float64), c.shape)
        if np.any(r < 0) or not np.all(np.isfinite(r)):
            raise SpecError("radius must be a finite number >= 0")
        lo, hi = c - r, c + r
        if domain is not None:
            if domain.dim != c.size:
                raise SpecError(
                    f"domain has {domain.dim} inputs but the centre has {c.size}; give both the "
                    "same size"
                )
            lo, hi = np.maximum(lo, domain.lower), np.minimum(hi, domain.upper)
        return cls(lo, hi)

    @property
    def dim(self) -> int:
        return int(self.lower.size)

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> np.ndarray:
        return (self.upper - self.lower) / 2

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        return bool(np.all(x >= self.lower - tol) and np.all(x <= self.upper + tol))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.lower, self.upper, size=(n, self.dim))


@dataclass(frozen=True)
class InputSet:
    """A union of boxes (a VNN-LIB disjunction of input boxes gives several)."""

    boxes: tuple[Box, ...]

    def __post_init__(self) -> None:
        boxes = tuple(self.boxes)
        if not boxes:
            raise SpecError("input set has no box; give at least one")
        dims = {b.dim for b in boxes}
        if len(dims) != 1:
            raise SpecError(f"input boxes have different sizes {sorted(dims)}; give one size")
        object.__setattr__(self, "boxes", boxes)

    @classmethod
    def of(cls, *boxes: Box) -> InputSet:
        return cls(tuple(boxes))

    @property
    def dim(self) -> int:
        return self.boxes[0].dim

    def hull(self) -> Box:
        """The smallest box holding every box of the union."""
        lo = np.min([b.lower for b in self.boxes], axis=0)
        hi = np.max([b.upper for b in self.boxes], axis=0)
        return Box(lo, hi)


@dataclass(frozen=True)
class Polytope:
    """A conjunction of linear inequalities ``mat @ y <= rhs``; rows flagged in ``strict`` (a
    VNN-LIB ``<`` or ``>``) are ``mat @ y < rhs``. Bounds and proofs use the closed set (a
    superset); a point is checked against the strict one (:meth:`satisfied_by`)."""

    mat: np.ndarray
    rhs: np.ndarray
    strict: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        m = np.array(self.mat, dtype=np.float64)
        r = np.array(self.rhs, dtype=np.float64).reshape(-1)
        if m.ndim == 1:
            m = m.reshape(1, -1)
        if m.ndim != 2 or m.shape[0] != r.size:
            raise SpecError(
                f"constraint matrix {m.shape} and right-hand side {r.shape} disagree"
            )
        object.__setattr__(self, "mat", _frozen(m))
        object.__setattr__(self, "rhs", _frozen(r))
        strict = tuple(bool(b) for b in self.strict)
        if strict and len(strict) != r.size:
            raise SpecError(f"{len(strict)} strictness flags for {r.size} constraint rows")
        object.__setattr__(self, "strict", strict if any(strict) else ())

    def satisfied_by(self, y: np.ndarray, tol: float = 0.0) -> bool:
        """``mat @ y <= rhs + tol`` on every row, and ``< rhs - tol`` on the strict ones (a
        point on the boundary does not violate a strict relation: the margin must be clear)."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        lhs = self.mat @ y
        if not self.strict:
            return bool(np.all(lhs <= self.rhs + tol))
        strict = np.array(self.strict)
        return bool(np.all(np.where(strict, lhs < self.rhs - tol, lhs <= self.rhs + tol)))

    def closed(self) -> Polytope:
        """The same rows, none strict."""
        return Polytope(self.mat, self.rhs)


@dataclass(frozen=True)
class OutputConstraint:
    """A disjunction of polytopes over the outputs: ``OR_k (mat_k @ y <= rhs_k)``.

    In a VNN-LIB property this is the *unsafe* set: the property is violated when some input of
    the input set reaches it.
    """

    disjuncts: tuple[Polytope, ...]

    def __post_init__(self) -> None:
        d = tuple(self.disjuncts)
        if not d:
            raise SpecError("output constraint has no disjunct")
        widths = {p.mat.shape[1] for p in d}
        if len(widths) != 1:
            raise SpecError(f"output constraint disjuncts refer to {sorted(widths)} outputs")
        object.__setattr__(self, "disjuncts", d)

    @property
    def out_dim(self) -> int:
        return int(self.disjuncts[0].mat.shape[1])

    def satisfied_by(self, y: np.ndarray, tol: float = 0.0) -> bool:
        return any(p.satisfied_by(y, tol) for p in self.disjuncts)


def _shape(shape: Sequence[int], size: int, what: str) -> tuple[int, ...]:
    """``shape`` as a tuple of ints, checked to hold ``size`` values (``()`` means unstated)."""
    dims = tuple(int(d) for d in shape)
    if dims and (any(d < 1 for d in dims) or int(np.prod(dims)) != size):
        raise SpecError(f"{what} shape {list(dims)} does not hold {size} values; give a shape "
                        f"whose dimensions multiply to {size}")
    return dims


@dataclass(frozen=True)
class Property:
    """A single-network VNN-LIB property: input set and unsafe output set.

    The property is *violated* (``sat``) when some ``x`` in ``inputs`` has ``N(x)`` in ``unsafe``.
    ``input_shape``/``output_shape`` are the tensor shapes a VNN-LIB 2.0 file declares (``()``
    when the source did not state them, as in VNN-LIB 1.0); the sets work on flattened vectors.
    """

    inputs: InputSet
    unsafe: OutputConstraint
    n_outputs: int
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.unsafe.out_dim != self.n_outputs:
            raise SpecError(f"the unsafe set refers to {self.unsafe.out_dim} outputs but the "
                            f"property has {self.n_outputs}; give one column per output")
        object.__setattr__(self, "input_shape",
                           _shape(self.input_shape, self.inputs.dim, "input"))
        object.__setattr__(self, "output_shape",
                           _shape(self.output_shape, self.n_outputs, "output"))

    @property
    def n_inputs(self) -> int:
        return self.inputs.dim


@dataclass(frozen=True)
class SpecCase:
    """One input box with its own unsafe set: an entry of ``[(box, [(mat, rhs), ...])]``.

    VNN-LIB files whose disjuncts each pair input bounds with output constraints read as a list
    of these; the property is violated when some case has an ``x`` in ``box`` reaching
    ``unsafe``.
    """

    box: Box
    unsafe: OutputConstraint


NETWORK_RELATIONS = ("isomorphic-to", "equal-to")


@dataclass(frozen=True)
class TwoNetworkQuery:
    """A VNN-LIB 2.0 query over two networks ``f`` and ``g`` fed the same input.

    Violated (``sat``) when some ``x`` in ``inputs`` gives ``[f(x) ; g(x)]`` in ``unsafe``, whose
    columns are the ``n_outputs`` outputs of ``first`` followed by those of ``second``.
    ``relation`` is what the file declares of ``second`` (``"isomorphic-to"``: same structure,
    ``"equal-to"``: same weights too, ``None``: nothing).
    """

    inputs: InputSet
    unsafe: OutputConstraint
    n_outputs: int
    first: str = "f"
    second: str = "g"
    relation: str | None = "isomorphic-to"
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.unsafe.out_dim != 2 * self.n_outputs:
            raise SpecError(f"the unsafe set of a two-network query refers to "
                            f"{self.unsafe.out_dim} outputs but needs 2 x {self.n_outputs} "
                            f"(the outputs of {self.first} then those of {self.second})")
        if self.relation is not None and self.relation not in NETWORK_RELATIONS:
            raise SpecError(f"network relation {self.relation!r} is unknown; use one of "
                            f"{', '.join(NETWORK_RELATIONS)} or None")
        if self.first == self.second:
            raise SpecError(f"both networks are named {self.first!r}; give them different names")
        object.__setattr__(self, "input_shape",
                           _shape(self.input_shape, self.inputs.dim, "input"))
        object.__setattr__(self, "output_shape",
                           _shape(self.output_shape, self.n_outputs, "output"))

    @property
    def n_inputs(self) -> int:
        return self.inputs.dim
