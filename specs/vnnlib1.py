"""VNN-LIB 1.0 (VNN-COMP 2021-2025, Marabou): reading into and writing from the set model.

Why an own reader: the ``vnnlib`` package reads VNN-LIB 2.0 only (it refuses 1.0 files), the 1.0
subset in use is tiny (``declare-const``, ``assert``, ``and``/``or``, comparisons of linear
terms), and translating 1.0 to 2.0 first would need tensor shapes a 1.0 file does not state.

Read semantics: the asserts are conjoined; input constraints must be bounds on single ``X_i``
(so each disjunct is a box), output constraints are linear in ``Y_j``. Strict comparisons
(``<``, ``>``) are read as non-strict: for the closed sets verifiers search, the difference is
a boundary of measure zero. ``=`` is read as ``<=`` and ``>=``.

The writer prints what Marabou's ``MarabouCore.loadProperty`` accepts: one ``(assert ...)``
per input bound for a single box, ``(assert (or (and ...) ...))`` for several boxes or several
unsafe disjuncts, comments on lines of their own, numbers as ``repr(float)`` (exact round trip;
``e+`` written as ``e`` since Marabou's tokenizer splits at ``+``). Marabou cannot read output
rows with three or more terms unless all coefficients are +-1 (``(+ (* c Y_i) ...)``); such
rows are written in standard 1.0 anyway.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nnbisim.core.errors import SpecError
from nnbisim.specs import _constraints as cst
from nnbisim.specs._text import PathLike, read_text, write_text
from nnbisim.specs.sets import Property, SpecCase

__all__ = ["SpecCase", "parse_cases", "parse_property", "read_cases", "read_property",
           "write_cases_vnnlib1", "write_vnnlib1"]

_TOKEN = re.compile(r";[^\n]*|\s+|\(|\)|[^\s();]+")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_VAR = re.compile(r"([XY])_(\d+)")
_IGNORED = {"check-sat", "get-model", "exit", "set-logic", "set-info", "set-option"}
_COMPARE = {"<=", ">=", "<", ">", "="}
_NOT_FINITE = {"nan", "inf", "infinity"}
MAX_ATOMS = 10_000_000  # comparisons in the disjunctive normal form of one assert


@dataclass(frozen=True)
class _Atom:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple[_Atom | _List, ...]
    line: int


_Expr = _Atom | _List
_Linear = tuple[dict[cst.Key, float], float]


def _parse_sexprs(text: str, source: str) -> list[_List]:
    stack: list[tuple[list[_Expr], int]] = []
    top: list[_List] = []
    line = 1
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok == "(":
            stack.append(([], line))
        elif tok == ")":
            if not stack:
                raise SpecError(f"{source}: line {line}: ')' without a matching '('; remove it")
            items, start = stack.pop()
            node = _List(tuple(items), start)
            if stack:
                stack[-1][0].append(node)
            else:
                top.append(node)
        elif not tok.isspace() and not tok.startswith(";"):
            if not stack:
                raise SpecError(f"{source}: line {line}: '{tok}' outside parentheses; every "
                                "command must be written as (command ...)")
            stack[-1][0].append(_Atom(tok, line))
        line += tok.count("\n")
    if stack:
        raise SpecError(f"{source}: line {stack[-1][1]}: '(' is never closed; add the missing "
                        "')'")
    return top


class _Reader:
    """Turns parsed commands into DNF atoms over declared X/Y variables."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.declared: dict[str, set[int]] = {"X": set(), "Y": set()}

    def fail(self, line: int, what: str) -> SpecError:
        return SpecError(f"{self.source}: line {line}: {what}")

    def declare(self, cmd: _List) -> None:
        items = cmd.items
        if (len(items) != 3 or not all(isinstance(i, _Atom) for i in items[1:])
                or items[2].text != "Real"):
            raise self.fail(cmd.line, "expected (declare-const X_i Real) or (declare-const Y_j "
                                      "Real)")
        m = _VAR.fullmatch(items[1].text)
        if m is None:
            raise self.fail(cmd.line, f"variable '{items[1].text}' is neither X_i (input) nor "
                                      "Y_j (output); rename it")
        self.declared[m.group(1)].add(int(m.group(2)))

    def linear(self, e: _Expr) -> _Linear:
        """A linear term, read without recursion (any nesting depth)."""
        return _post_order(e, self._term_args, self._leaf_term, self._combine_term)

    def _leaf_term(self, e: _Atom) -> _Linear:
        if _NUMBER.fullmatch(e.text):
            value = float(e.text)
            if not math.isfinite(value):
                raise self.fail(e.line, f"'{e.text}' is out of the double range; give a "
                                        "finite number")
            return {}, value
        if e.text.lower().lstrip("+-") in _NOT_FINITE:
            kind = "a NaN" if "nan" in e.text.lower() else "an infinite"
            raise self.fail(e.line, f"'{e.text}' is {kind} bound, not a number nnbisim can "
                                    "use; give a finite number")
        m = _VAR.fullmatch(e.text)
        if m is None or int(m.group(2)) not in self.declared[m.group(1)]:
            raise self.fail(e.line, f"'{e.text}' is not a number or a declared variable; "
                                    "declare it with (declare-const NAME Real) first")
        return {(m.group(1), int(m.group(2))): 1.0}, 0.0

    def _term_args(self, e: _Expr) -> Sequence[_Expr] | None:
        if isinstance(e, _Atom):
            return None
        if not e.items or not isinstance(e.items[0], _Atom):
            raise self.fail(e.line, "expected an arithmetic term like (+ a b), (- a), (* c X_0)")
        return _flat(e, "+") if e.items[0].text == "+" else e.items[1:]

    def _combine_term(self, e: _List, args: list[_Linear]) -> _Linear:
        op = e.items[0].text
        if op == "+" and args:
            return _add(args)
        if op == "-" and len(args) == 1:
            return _scale(args[0], -1.0)
        if op == "-" and args:
            return _add([args[0], *(_scale(a, -1.0) for a in args[1:])])
        if op == "*" and args:
            coef, var = 1.0, None
            for a in args:
                if a[0]:
                    if var is not None:
                        raise self.fail(e.line, "a product of variables is not linear; "
                                                "only constant * variable is supported")
                    var = a
                else:
                    coef *= a[1]
            return _scale(var, coef) if var is not None else ({}, coef)
        raise self.fail(e.line, f"unsupported arithmetic '{op}' with {len(args)} arguments; "
                                "use +, -, * with constants")

    def dnf(self, e: _Expr) -> list[list[cst.Atom]]:
        """A constraint in disjunctive normal form, read without recursion (any nesting)."""
        return _post_order(e, self._constraint_args, self._comparison, self._combine_dnf)

    def _constraint_args(self, e: _Expr) -> Sequence[_Expr] | None:
        if not isinstance(e, _List) or not e.items or not isinstance(e.items[0], _Atom):
            raise self.fail(e.line, "expected a constraint like (<= a b), (and ...), (or ...)")
        op = e.items[0].text
        if op in ("and", "or"):
            if len(e.items) == 1:
                raise self.fail(e.line, f"'{op}' needs at least one argument")
            return _flat(e, op)
        if op in _COMPARE:
            return None
        raise self.fail(e.line, f"unsupported constraint '{op}'; use <=, >=, <, >, =, and, or")

    def _comparison(self, e: _List) -> list[list[cst.Atom]]:
        op, args = e.items[0].text, e.items[1:]
        if len(args) != 2:
            raise self.fail(e.line, f"'{op}' needs exactly two arguments")
        lhs, rhs = self.linear(args[0]), self.linear(args[1])
        if op in ("<=", "<"):
            return [[cst.Atom.le(lhs, rhs)]]
        if op in (">=", ">"):
            return [[cst.Atom.le(rhs, lhs)]]
        return [[cst.Atom.le(lhs, rhs), cst.Atom.le(rhs, lhs)]]

    def _combine_dnf(self, e: _List, parts: list[list[list[cst.Atom]]]
                     ) -> list[list[cst.Atom]]:
        if e.items[0].text == "or":
            return [conj for part in parts for conj in part]
        out = cst.dnf_product(parts, self.source)
        if sum(len(conj) for conj in out) > MAX_ATOMS:
            raise self.fail(e.line, f"its disjunctions expand to more than {MAX_ATOMS} "
                                    "comparisons; split the file into several properties")
        return out

    def sizes(self) -> tuple[int, int]:
        n = {}
        for kind, what in (("X", "input"), ("Y", "output")):
            idx = self.declared[kind]
            if not idx:
                raise SpecError(f"{self.source}: declares no {what} variable; add "
                                f"(declare-const {kind}_0 Real) and so on")
            if len(idx) != max(idx) + 1:  # the first gap, found without a range as large
                missing = next(i for i, v in enumerate(sorted(idx)) if i != v)
                raise SpecError(f"{self.source}: {kind}_{missing} is not declared but "
                                f"{kind}_{max(idx)} is; declare {kind}_0 .. {kind}_{max(idx)}")
            n[kind] = max(idx) + 1
        return n["X"], n["Y"]


def _flat(e: _List, op: str) -> list[_Expr]:
    """The arguments of ``(op ...)`` with nested ``(op ...)`` arguments spliced in (``and``,
    ``or`` and ``+`` are associative), without recursion."""
    out: list[_Expr] = []
    todo = list(reversed(e.items[1:]))
    while todo:
        a = todo.pop()
        if (isinstance(a, _List) and len(a.items) > 1 and isinstance(a.items[0], _Atom)
                and a.items[0].text == op):
            todo.extend(reversed(a.items[1:]))
        else:
            out.append(a)
    return out


def _post_order(root: _Expr, args_of: Callable[[_Expr], Sequence[_Expr] | None],
                leaf: Callable, combine: Callable):
    """Evaluate a tree bottom-up with an explicit stack: ``args_of(e)`` gives the arguments of
    an inner node (None for a leaf), ``leaf(e)`` a leaf's value, ``combine(e, values)`` an
    inner node's from its arguments' values. Deep nesting costs memory, never the stack."""
    todo: list[tuple[_Expr, Sequence[_Expr] | None]] = [(root, None)]
    values: list = []
    while todo:
        e, args = todo.pop()
        if args is not None:
            k = len(values) - len(args)
            done = values[k:]
            del values[k:]
            values.append(combine(e, done))
            continue
        args = args_of(e)
        if args is None:
            values.append(leaf(e))
        else:
            todo.append((e, args))
            todo.extend((a, None) for a in reversed(args))
    return values[0]


def _add(parts: Sequence[_Linear]) -> _Linear:
    coefs: dict[cst.Key, float] = {}
    const = 0.0
    for c, k in parts:
        for v, a in c.items():
            coefs[v] = coefs.get(v, 0.0) + a
        const += k
    return coefs, const


def _scale(e: _Linear, s: float) -> _Linear:
    return {v: a * s for v, a in e[0].items()}, e[1] * s


def _name(key: cst.Key) -> str:
    return f"{key[0]}_{key[1]}"


def parse_cases(text: str, source: str = "<string>") -> list[SpecCase]:
    """The (box, unsafe set) cases a VNN-LIB 1.0 text describes (``source`` names it in errors)."""
    reader = _Reader(source)
    parts: list[list[list[cst.Atom]]] = []
    for cmd in _parse_sexprs(text, source):
        head = cmd.items[0] if cmd.items else None
        if not isinstance(head, _Atom):
            raise reader.fail(cmd.line, "expected a command like (declare-const ...) or "
                                        "(assert ...)")
        if head.text == "declare-const":
            reader.declare(cmd)
        elif head.text == "assert":
            if len(cmd.items) != 2:
                raise reader.fail(cmd.line, "assert takes exactly one constraint; wrap several "
                                            "in (and ...)")
            parts.append(reader.dnf(cmd.items[1]))
        elif head.text not in _IGNORED:
            raise reader.fail(cmd.line, f"unknown command '{head.text}'; VNN-LIB 1.0 has "
                                        "declare-const and assert")
    n_in, n_out = reader.sizes()
    conjunctions = cst.dnf_product(parts, source)
    many = len(conjunctions) > 1
    cases = [cst.case_from_atoms(atoms, n_in, n_out, _name,
                                 f"{source} (disjunct {k + 1})" if many else source)
             for k, atoms in enumerate(conjunctions)]
    return cst.group_cases(cases, source)


def parse_property(text: str, source: str = "<string>") -> Property:
    """The property a VNN-LIB 1.0 text states, when its input and output parts are independent."""
    cases = parse_cases(text, source)
    inputs, unsafe = cst.split_cases(cases, source)
    return Property(inputs, unsafe, unsafe.out_dim)


def read_cases(path: PathLike) -> list[SpecCase]:
    """The (box, unsafe set) cases of a VNN-LIB 1.0 file (plain or gzip'd)."""
    return parse_cases(read_text(path), str(path))


def read_property(path: PathLike) -> Property:
    """The property of a VNN-LIB 1.0 file; SpecError when unsafe sets differ between boxes."""
    return parse_property(read_text(path), str(path))


def _num(x: float) -> str:
    x = cst.check_writable(x)
    return repr(x).replace("e+", "e")


def _header(n_in: int, n_out: int, comment: str | None) -> list[str]:
    lines = [f"; {c}" for c in (comment or "written by nnbisim").splitlines()]
    lines += [""] + [f"(declare-const X_{i} Real)" for i in range(n_in)]
    lines += [""] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    return lines


def write_vnnlib1(prop: Property, path: PathLike | None = None, comment: str | None = None) -> str:
    """The VNN-LIB 1.0 text of ``prop`` (written to ``path`` when given), loadable by Marabou."""
    def x(i: int) -> str:
        return f"X_{i}"

    def y(j: int) -> str:
        return f"Y_{j}"

    lines = _header(prop.n_inputs, prop.n_outputs, comment)
    lines += ["", "; input set"] + cst.format_boxes(prop.inputs.boxes, x, _num)
    lines += ["", "; unsafe outputs"] + cst.format_unsafe(prop.unsafe, y, _num)
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text(path, text)
    return text


def write_cases_vnnlib1(cases: Sequence[SpecCase], path: PathLike | None = None,
                        comment: str | None = None) -> str:
    """VNN-LIB 1.0 text for cases whose boxes have different unsafe sets (one big ``or``)."""
    if not cases:
        raise SpecError("no case to write; give at least one (box, unsafe set) pair")
    n_in, n_out = cases[0].box.dim, cases[0].unsafe.out_dim
    if any(c.box.dim != n_in or c.unsafe.out_dim != n_out for c in cases):
        raise SpecError("the cases differ in input or output size; give cases of one network")
    disjuncts = []
    for case in cases:
        bounds = []
        for i in range(n_in):
            bounds += [f"(<= X_{i} {_num(case.box.upper[i])})",
                       f"(>= X_{i} {_num(case.box.lower[i])})"]
        for p in case.unsafe.disjuncts:
            rows = cst.clean_rows(p)
            if rows is not None:
                out = [cst.format_row(r, v, lambda j: f"Y_{j}", _num) for r, v in rows]
                disjuncts.append(f"    (and {' '.join(bounds + out)})")
    if not disjuncts:
        raise SpecError("every unsafe set is empty, so the property holds trivially")
    lines = _header(n_in, n_out, comment) + ["", "(assert (or", *disjuncts, "))"]
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text(path, text)
    return text
