"""Two-network queries whose inputs are coupled by linear constraints, not all equal.

VNN-COMP 2026's monotonicity questions give ``g`` its own input: ``(<= X_f[0] X_g[0])``, the
other elements tied by ``(== X_f[i] X_g[i])``, ``X_g[0]`` in its own range, and an output
relation such as ``(< Y_f[1] Y_g[1])``. Such a query reads as a :class:`CoupledQuery` over the
stacked input ``z = [x_f ; x_g]``: a box (single-variable bounds) and rows ``C z <= e`` (every
constraint relating several input elements), one unsafe set over ``[Y_f ; Y_g]``. Rows written
with ``<`` or ``>`` are strict: a counterexample must satisfy them with a clear margin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.specs import _constraints as cst
from nnbisim.specs.sets import NETWORK_RELATIONS, OutputConstraint, Polytope, _frozen

__all__ = ["CoupledQuery", "coupled_from_atoms"]


@dataclass(frozen=True)
class CoupledQuery:
    """Violated (``sat``) when some ``z = [x_f ; x_g]`` with ``lower <= z <= upper`` and
    ``mat @ z <= rhs`` (``<`` on the ``strict`` rows) gives ``[f(x_f) ; g(x_g)]`` in
    ``unsafe``. ``lower``/``upper`` may be infinite where only the rows bound an element."""

    lower: np.ndarray
    upper: np.ndarray
    mat: np.ndarray
    rhs: np.ndarray
    strict: tuple[bool, ...]
    unsafe: OutputConstraint
    n_outputs: int
    first: str = "f"
    second: str = "g"
    relation: str | None = None
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        lo, hi = np.asarray(self.lower, np.float64), np.asarray(self.upper, np.float64)
        mat = np.asarray(self.mat, np.float64).reshape(-1, lo.size)
        rhs = np.asarray(self.rhs, np.float64).reshape(-1)
        if lo.size % 2 or hi.shape != lo.shape or len(rhs) != len(mat):
            raise SpecError("a coupled query needs bounds on [x_f ; x_g] (2 n values) and one "
                            "right-hand side per row")
        if len(self.strict) != len(rhs):
            raise SpecError(f"{len(self.strict)} strictness flags for {len(rhs)} input rows")
        if self.unsafe.out_dim != 2 * self.n_outputs:
            raise SpecError(f"the unsafe set refers to {self.unsafe.out_dim} outputs but needs "
                            f"2 x {self.n_outputs}")
        if self.relation is not None and self.relation not in NETWORK_RELATIONS:
            raise SpecError(f"network relation {self.relation!r} is unknown")
        for name, a in (("lower", lo), ("upper", hi), ("mat", mat), ("rhs", rhs)):
            object.__setattr__(self, name, _frozen(a))
        object.__setattr__(self, "strict", tuple(bool(s) for s in self.strict))
        object.__setattr__(self, "input_shape", tuple(self.input_shape) or (self.n_inputs,))
        object.__setattr__(self, "output_shape", tuple(self.output_shape) or (self.n_outputs,))

    @property
    def n_inputs(self) -> int:
        """Elements of one network's input (``z`` holds twice as many)."""
        return self.lower.size // 2

    def contains(self, z: np.ndarray, tol: float = 0.0) -> bool:
        """Is ``z`` in the input set (strict rows with a margin above ``tol``)?"""
        z = np.asarray(z, np.float64).reshape(-1)
        if not (np.all(z >= self.lower - tol) and np.all(z <= self.upper + tol)):
            return False
        return Polytope(self.mat, self.rhs, self.strict).satisfied_by(z, tol) if len(
            self.rhs) else True


def _input_part(atoms: Sequence[cst.Atom], n_z: int, name: cst.Namer, where: str
                ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, float, bool]]]:
    lo, hi = np.full(n_z, -np.inf), np.full(n_z, np.inf)
    rows: list[tuple[np.ndarray, float, bool]] = []
    for atom in atoms:
        if len(atom.coefs) == 1:  # a bound (strict bounds are read closed: docs/formats.md)
            ((_, i), c), = atom.coefs
            bound = -atom.const / c + 0.0
            if c > 0:
                hi[i] = min(hi[i], bound)
            else:
                lo[i] = max(lo[i], bound)
            continue
        row = np.zeros(n_z)
        for (_, i), c in atom.coefs:
            row[i] += c
        rows.append((row, -atom.const + 0.0, atom.strict))
    for i in np.flatnonzero(lo > hi):
        raise SpecError(f"{where}: input {name(('X', int(i)))} has lower bound {lo[i]!r} above "
                        f"upper bound {hi[i]!r}, so the input set is empty; fix the bounds")
    return lo, hi, rows


def coupled_from_atoms(conjunctions: Sequence[Sequence[cst.Atom]], n_in: int, n_out: int,
                       name: cst.Namer, source: str,
                       make: Callable[..., CoupledQuery]) -> CoupledQuery:
    """The coupled query of a DNF over ``("X", i)`` for ``i < 2 n_in`` (``x_f`` then ``x_g``)
    and ``("Y", j)``: every disjunct must state the same input constraints (disjunctions over
    outputs only). ``make(lower, upper, mat, rhs, strict, unsafe)`` builds the query."""
    inputs, polys = None, []
    for atoms in conjunctions:
        xs = [a for a in atoms if a.coefs and all(k[0] == "X" for k, _ in a.coefs)]
        ys = [a for a in atoms if a.coefs and all(k[0] == "Y" for k, _ in a.coefs)]
        mixed = [a for a in atoms if a.coefs and a not in xs and a not in ys]
        if mixed:
            raise SpecError(f"{source}: a constraint mixes inputs and outputs; only input "
                            "constraints and output constraints are supported")
        if any(not a.coefs and (a.const > 0 or (a.strict and a.const == 0)) for a in atoms):
            continue  # a false constant comparison: this disjunct is empty
        part = _input_part(xs, 2 * n_in, name, source)
        key = (part[0].tobytes(), part[1].tobytes(),
               tuple((r.tobytes(), v, s) for r, v, s in part[2]))
        if inputs is not None and key != inputs[0]:
            raise SpecError(f"{source}: its disjuncts state different input constraints; "
                            "nnbisim reads coupled two-network queries whose disjunctions are "
                            "over outputs only (split the file into one query per input set)")
        inputs = (key, part)
        mat = np.zeros((len(ys), 2 * n_out))
        for r, atom in enumerate(ys):
            for (_, j), c in atom.coefs:
                mat[r, j] += c
        poly = Polytope(mat, [-a.const + 0.0 for a in ys], tuple(a.strict for a in ys))
        if cst.poly_key(poly) not in {cst.poly_key(p) for p in polys}:
            polys.append(poly)
    if inputs is None or not polys:
        raise SpecError(f"{source}: every disjunct contradicts itself, so nothing can be "
                        "checked; fix the constraints")
    lo, hi, rows = inputs[1]
    mat = np.array([r for r, _, _ in rows]).reshape(len(rows), 2 * n_in)
    return make(lo, hi, mat, np.array([v for _, v, _ in rows]),
                tuple(s for _, _, s in rows), OutputConstraint(tuple(polys)))
