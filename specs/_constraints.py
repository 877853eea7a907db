"""What the VNN-LIB readers and writers share: linear atoms, DNF, cases, and row formatting.

Both readers turn a file into a list of conjunctions of linear atoms ``sum c_v v + k <= 0`` over
input variables ``("X", i)`` and output variables ``("Y", j)`` (flat indices), then into
:class:`SpecCase` values; both writers print an output row with the same small set of forms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, SpecCase

Key = tuple[str, int]  # ("X", flat index) or ("Y", flat index)
Namer = Callable[[Key], str]

MAX_CASES = 100_000


@dataclass(frozen=True)
class Atom:
    """The linear inequality ``sum coefs[v] * v + const <= 0``."""

    coefs: tuple[tuple[Key, float], ...]
    const: float
    strict: bool = False  # ``< 0`` instead of ``<= 0``

    @classmethod
    def le(cls, lhs: tuple[dict[Key, float], float], rhs: tuple[dict[Key, float], float],
           strict: bool = False) -> Atom:
        """``lhs <= rhs`` (``lhs < rhs`` when ``strict``) for two linear expressions
        ``(coefficients, constant)``."""
        coefs = dict(lhs[0])
        for k, c in rhs[0].items():
            coefs[k] = coefs.get(k, 0.0) - c
        return cls(tuple((k, c) for k, c in coefs.items() if c != 0.0), lhs[1] - rhs[1], strict)


def dnf_product(parts: Iterable[list[list[Atom]]], source: str) -> list[list[Atom]]:
    """The DNF of the conjunction of several DNFs (one per ``assert``)."""
    cases: list[list[Atom]] = [[]]
    for part in parts:
        if len(part) == 1:
            for case in cases:
                case.extend(part[0])
            continue
        if len(cases) * len(part) > MAX_CASES:
            raise SpecError(f"{source}: its disjunctions expand to more than {MAX_CASES} cases; "
                            "split the file into several properties")
        cases = [case + alt for case in cases for alt in part]
    return cases


def case_from_atoms(atoms: Sequence[Atom], n_in: int, n_out: int, name: Namer,
                    where: str) -> SpecCase | None:
    """The box and output polytope one conjunction describes; ``None`` when it cannot hold.

    ``where`` names the file (and the disjunct) for error messages.
    """
    lo = np.full(n_in, -np.inf)
    hi = np.full(n_in, np.inf)
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    strict: list[bool] = []
    for atom in atoms:
        xs = [(k, c) for k, c in atom.coefs if k[0] == "X"]
        ys = [(k, c) for k, c in atom.coefs if k[0] == "Y"]
        if xs and ys:
            raise SpecError(f"{where}: a constraint mixes inputs and outputs "
                            f"({name(xs[0][0])} and {name(ys[0][0])}); only input bounds and "
                            "output constraints are supported")
        if xs:
            if len(xs) > 1:
                raise SpecError(f"{where}: a constraint relates several inputs "
                                f"({', '.join(name(k) for k, _ in xs)}); inputs must be given "
                                "as bounds on single variables (a box)")
            (_, i), c = xs[0]
            bound = -atom.const / c + 0.0
            if c > 0:
                hi[i] = min(hi[i], bound)
            else:
                lo[i] = max(lo[i], bound)
        elif ys:
            row = np.zeros(n_out)
            for (_, j), c in ys:
                row[j] += c
            rows.append(row)
            rhs.append(-atom.const + 0.0)
            strict.append(atom.strict)
        elif atom.const > 0 or (atom.strict and atom.const == 0):
            return None  # a false constant comparison: this disjunct is empty
    for i in range(n_in):
        for value, side in ((lo[i], "lower"), (hi[i], "upper")):
            if not np.isfinite(value):
                raise SpecError(f"{where}: input {name(('X', i))} has no {side} bound; bound "
                                "every input on both sides")
        if lo[i] > hi[i]:
            raise SpecError(f"{where}: input {name(('X', i))} has lower bound "
                            f"{float(lo[i])!r} above upper bound {float(hi[i])!r}, so the input "
                            "set is empty; fix the bounds")
    poly = Polytope(np.array(rows).reshape(len(rows), n_out), np.array(rhs), tuple(strict))
    return SpecCase(Box(lo, hi), OutputConstraint((poly,)))


def poly_key(p: Polytope) -> tuple[tuple[int, ...], bytes, bytes, tuple[bool, ...]]:
    return p.mat.shape, p.mat.tobytes(), p.rhs.tobytes(), p.strict


def group_cases(cases: Sequence[SpecCase | None], source: str) -> list[SpecCase]:
    """Merge cases with equal boxes (their unsafe sets join); drop empty ones."""
    groups: dict[bytes, tuple[Box, dict]] = {}
    for case in cases:
        if case is None:
            continue
        key = case.box.lower.tobytes() + case.box.upper.tobytes()
        box, polys = groups.setdefault(key, (case.box, {}))
        for p in case.unsafe.disjuncts:
            polys.setdefault(poly_key(p), p)
    if not groups:
        raise SpecError(f"{source}: every disjunct contradicts itself, so nothing can be "
                        "checked; fix the constraints")
    return [SpecCase(box, OutputConstraint(tuple(polys.values())))
            for box, polys in groups.values()]


def split_cases(cases: Sequence[SpecCase], source: str) -> tuple[InputSet, OutputConstraint]:
    """One input set and one unsafe set, when every box has the same unsafe set."""
    first = {poly_key(p) for p in cases[0].unsafe.disjuncts}
    for k, case in enumerate(cases[1:], start=2):
        if {poly_key(p) for p in case.unsafe.disjuncts} != first:
            raise SpecError(f"{source}: input box {k} has other output constraints than box 1, "
                            "so the file is not one input set with one unsafe set; read it as "
                            "a list of cases (read_cases)")
    return InputSet(tuple(c.box for c in cases)), cases[0].unsafe


def clean_rows(poly: Polytope) -> list[tuple[np.ndarray, float]] | None:
    """The rows of ``poly`` that constrain something; ``None`` when a row can never hold."""
    rows = []
    for row, r in zip(poly.mat, poly.rhs, strict=True):
        if not np.all(np.isfinite(row)) or not np.isfinite(r):
            raise SpecError("an output constraint has a coefficient or bound that is not a "
                            "finite number; give finite values")
        if np.any(row != 0):
            rows.append((row, float(r)))
        elif r < 0:
            return None
    return rows


def check_writable(x: float) -> float:
    """``x`` as a float that C++ readers (``std::stod``: Marabou, vnnlib) read back exactly."""
    x = float(x) + 0.0  # no "-0.0"
    if not np.isfinite(x):
        raise SpecError(f"cannot write {x} into a VNN-LIB file; give finite numbers")
    if x != 0.0 and abs(x) < np.finfo(np.float64).tiny:
        raise SpecError(f"cannot write {x!r} into a VNN-LIB file: it is subnormal and C++ "
                        "readers refuse it; round it to 0 or to a normal number")
    return x


def _product(c: float, var: str, num: Callable[[float], str], var_first: bool) -> str:
    return f"(* {var} {num(c)})" if var_first else f"(* {num(c)} {var})"


def _term(c: float, var: str, num: Callable[[float], str], var_first: bool) -> str:
    if c == 1.0:
        return var
    if c == -1.0:
        return f"(- {var})"
    return _product(c, var, num, var_first)


def format_row(row: np.ndarray, rhs: float, var: Callable[[int], str],
               num: Callable[[float], str], var_first: bool = False) -> str:
    """``row @ y <= rhs`` as one comparison, in the simplest form that reads back exactly.

    Forms: ``(<= Y_i v)``/``(>= Y_i v)``/``(<= (* c Y_i) v)`` for one term; ``(<= A B)`` for two
    terms and ``rhs == 0``; ``(<= (- A B) v)``/``(>= (- A B) v)`` and ``(<= (+ A (- B) C) v)`` for
    unit coefficients; ``(<= (+ (* c Y_i) ...) v)`` otherwise. All but the last load in Marabou.
    ``var_first`` writes products as ``(* Y_i c)`` (the ``vnnlib`` package types a product by
    its first factor, so ``(* 2.0 Y)`` fails for ``Real`` tensors).
    """
    def term(c: float, j: int) -> str:
        return _term(c, var(j), num, var_first)

    nz = [int(j) for j in np.flatnonzero(row)]
    cs = [float(row[j]) for j in nz]
    if len(nz) == 1:
        c, y = cs[0], var(nz[0])
        if c == -1.0:
            return f"(>= {y} {num(-rhs)})"
        return f"(<= {term(c, nz[0])} {num(rhs)})"
    if len(nz) == 2 and rhs == 0.0:
        a, b = (0, 1) if cs[0] > 0 or cs[1] < 0 else (1, 0)
        return f"(<= {term(cs[a], nz[a])} {term(-cs[b], nz[b])})"
    if all(abs(c) == 1.0 for c in cs):
        if len(nz) == 2 and cs[0] != cs[1]:
            pos, neg = (nz[0], nz[1]) if cs[0] > 0 else (nz[1], nz[0])
            if cs[0] > 0:
                return f"(<= (- {var(pos)} {var(neg)}) {num(rhs)})"
            return f"(>= (- {var(neg)} {var(pos)}) {num(-rhs)})"
        terms = " ".join(term(c, j) for j, c in zip(nz, cs, strict=True))
        return f"(<= (+ {terms}) {num(rhs)})"
    terms = " ".join(_product(c, var(j), num, var_first) for j, c in zip(nz, cs, strict=True))
    return f"(<= (+ {terms}) {num(rhs)})"


def _strictly(text: str) -> str:
    """A comparison written by :func:`format_row` with its operator made strict."""
    return "(<" + text[3:] if text.startswith("(<=") else "(>" + text[3:]


def format_unsafe(unsafe: OutputConstraint, var: Callable[[int], str],
                  num: Callable[[float], str], var_first: bool = False,
                  strict: bool = False) -> list[str]:
    """The ``assert`` lines stating the unsafe set (none when every output is unsafe); with
    ``strict``, a polytope's strict rows are written with ``<``/``>`` (VNN-LIB 2.0), else all
    rows closed (1.0, as VNN-COMP's tools read ``<`` anyway)."""
    disjuncts = []
    for p in unsafe.disjuncts:
        flags = p.strict or (False,) * len(p.rhs)
        rows = clean_rows(p)
        if rows is None:
            continue
        if not rows:
            return []  # an unconstrained disjunct: the whole output space is unsafe
        kept = [f for f, row in zip(flags, p.mat, strict=True) if np.any(row != 0)]
        disjuncts.append([_strictly(format_row(r, v, var, num, var_first)) if strict and f
                          else format_row(r, v, var, num, var_first)
                          for (r, v), f in zip(rows, kept, strict=True)])
    if not disjuncts:
        raise SpecError("every disjunct of the unsafe set is empty, so the property holds "
                        "trivially; give a satisfiable output constraint")
    if len(disjuncts) == 1:
        return [f"(assert {row})" for row in disjuncts[0]]
    body = [f"    (and {' '.join(rows)})" for rows in disjuncts]
    return ["(assert (or", *body, "))"]


def format_boxes(boxes: Sequence[Box], var: Callable[[int], str],
                 num: Callable[[float], str]) -> list[str]:
    """The ``assert`` lines stating a union of boxes: one bound per line for a single box."""
    def bounds(box: Box) -> list[str]:
        out = []
        for i in range(box.dim):
            out += [f"(<= {var(i)} {num(float(box.upper[i]))})",
                    f"(>= {var(i)} {num(float(box.lower[i]))})"]
        return out

    if len(boxes) == 1:
        return [f"(assert {b})" for b in bounds(boxes[0])]
    return ["(assert (or", *(f"    (and {' '.join(bounds(b))})" for b in boxes), "))"]
