"""VNN-LIB 2.0 (VNN-COMP 2026): reading through the ``vnnlib`` package, writing text it parses.

A query over one network reads as a :class:`Property` (tensor shapes kept); a query over two
networks fed the same input (``(== X_f[i] X_g[i])`` for every ``i``) reads as a
:class:`TwoNetworkQuery` whose unsafe set is over the stacked outputs ``[Y_f ; Y_g]``.

What ``vnnlib`` 1.0.2 accepts (established by parsing candidates): the first command must be
``(vnnlib-version <2.0>)``; ``(declare-network NAME [(isomorphic-to OTHER) | (equal-to OTHER)]
(declare-input X TYPE [d1,d2]) (declare-output Y TYPE [d]))`` with TYPE ``Real``, ``float32``,
``float64``, ... and ``[]`` for a scalar; no ONNX names on inputs/outputs; elements ``X[0,3]``
(all indices), scalars bare ``X``; numbers ``-?digits(.digits)?`` only (no exponent), and with
a float TYPE they must contain a ``.``; ``==`` (not ``=``); ``(and)`` needs an argument; at
least one ``assert``. It reads numbers to the nearest double (``std::stod``: subnormals fail), so
the decimal text of ``repr`` values round-trips exactly. Its type checker types a product by its
first factor, so over ``Real`` tensors ``(+ (* Y[0] 2.0) Y[1])`` is refused: the writers use ONNX
float types and write products as ``(* Y[0] 2.0)``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from functools import partial

import numpy as np
import vnnlib

from nnbisim.core.errors import SpecError
from nnbisim.core.limits import check_dense
from nnbisim.specs import _constraints as cst
from nnbisim.specs._text import PathLike, read_text, write_text
from nnbisim.specs.coupled import CoupledQuery, coupled_from_atoms
from nnbisim.specs.sets import Property, SpecCase, TwoNetworkQuery

__all__ = ["TwoNetworkQuery", "parse_cases", "parse_query", "read_query", "write_two_network_query",
           "write_vnnlib2"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_COMMENT = re.compile(r";[^\n]*")
_NOT_FINITE = re.compile(r"line (\d+): Undeclared variable at '([+-]?(?:nan|inf|infinity))'",
                         re.IGNORECASE)
MAX_DEPTH = 10_000  # nesting of a 2.0 file; the package's recursive parser fails near 50,000
# Element types the writers use. Not "Real": vnnlib 1.0.2 types a product by its first factor
# and then refuses e.g. (+ (* Y[0] 2.0) Y[1]) over Real tensors.
WRITABLE_DTYPES = ("float32", "float64", "float16", "bfloat16")
Query = Property | TwoNetworkQuery | CoupledQuery


def _condense(err: Exception) -> str:
    """One line from the package's error (plain text or a JSON list of errors)."""
    text = str(err).strip()
    try:
        errors = json.loads(text)["errors"]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())
    lines = [f"line {e.get('line')}: {e.get('message')} at '{e.get('offendingSymbol')}' "
             f"({e.get('hint')})" for e in errors]
    return "; ".join(dict.fromkeys(lines))  # the package repeats some errors


class _Vars:
    """Maps the package's variables to flat keys: ("X", i) and ("Y", column)."""

    def __init__(self, networks: Sequence[vnnlib.Network], source: str,
                 separate: bool = False) -> None:
        self.source = source
        self.separate = separate  # the second network's inputs get keys of their own (n + i)
        self.inputs: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.outputs: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.in_names = [net.inputs[0].name for net in networks if net.inputs]
        self.out_names = [net.outputs[0].name for net in networks if net.outputs]
        shapes_in, shapes_out = set(), set()
        for k, net in enumerate(networks):
            if len(net.inputs) != 1 or len(net.outputs) != 1:
                raise SpecError(f"{source}: network {net.name} declares {len(net.inputs)} inputs "
                                f"and {len(net.outputs)} outputs; nnbisim reads networks with "
                                "one input and one output tensor")
            self.inputs[net.inputs[0].name] = (k, tuple(net.inputs[0].shape))
            self.outputs[net.outputs[0].name] = (k, tuple(net.outputs[0].shape))
            shapes_in.add(tuple(net.inputs[0].shape))
            shapes_out.add(tuple(net.outputs[0].shape))
        if len(shapes_in) > 1 or len(shapes_out) > 1:
            raise SpecError(f"{source}: the networks have different input or output shapes; a "
                            "two-network query needs the same shapes")
        self.in_shape, self.out_shape = shapes_in.pop(), shapes_out.pop()
        self.n_in = int(np.prod(self.in_shape))
        self.n_out = int(np.prod(self.out_shape))
        for what, n in (("input", self.n_in), ("output", self.n_out)):
            check_dense(n, n, f"{source}: its declared {what}")  # before any array of that size

    def display(self, key: cst.Key) -> str:
        """The element's name as the file writes it, e.g. ``X[0,3]`` or ``Y_g[1]``."""
        kind, i = key
        if kind == "X":
            return _element(self.in_names[i // self.n_in], self.in_shape)(i % self.n_in)
        return _element(self.out_names[i // self.n_out], self.out_shape)(i % self.n_out)

    def key(self, var: vnnlib.Var) -> tuple[int, cst.Key]:
        """(network index, key); inputs of every network share the keys of the first unless
        ``separate``."""
        for table, kind in ((self.inputs, "X"), (self.outputs, "Y")):
            if var.name in table:
                net, shape = table[var.name]
                flat = int(np.ravel_multi_index(var.indices, shape)) if shape else 0
                step = self.n_out if kind == "Y" else self.n_in if self.separate else 0
                return net, (kind, flat + net * step)
        raise SpecError(f"{self.source}: constraint on {var.name}, which is a hidden tensor; "
                        "nnbisim reads constraints on inputs and outputs only")

    def linear(self, expr: vnnlib.ArithExpr) -> tuple[dict[cst.Key, float], float, set[int]]:
        try:
            lin = expr.to_linear_expr()
        except vnnlib.VNNLibException as e:
            raise SpecError(f"{self.source}: {expr} is not linear ({_condense(e)}); only linear "
                            "constraints are supported") from None
        coefs: dict[cst.Key, float] = {}
        nets = set()
        for term in lin.terms:
            net, key = self.key(term.var)
            nets.add(net)
            coefs[key] = coefs.get(key, 0.0) + term.coeff
        return coefs, lin.constant, nets

    def atoms(self, cmp: vnnlib.Comparison) -> list[cst.Atom]:
        if isinstance(cmp, vnnlib.NotEqual):
            raise SpecError(f"{self.source}: {cmp} uses '!=', which is not a convex constraint; "
                            "rewrite it with <= and >=")
        lhs, rhs = self.linear(cmp.lhs)[:2], self.linear(cmp.rhs)[:2]
        strict = isinstance(cmp, vnnlib.LessThan | vnnlib.GreaterThan)
        if isinstance(cmp, vnnlib.LessEqual | vnnlib.LessThan):
            return [cst.Atom.le(lhs, rhs, strict)]
        if isinstance(cmp, vnnlib.GreaterEqual | vnnlib.GreaterThan):
            return [cst.Atom.le(rhs, lhs, strict)]
        return [cst.Atom.le(lhs, rhs), cst.Atom.le(rhs, lhs)]

    def coupling(self, cmp: vnnlib.Comparison) -> int | None:
        """``i`` when ``cmp`` is ``X_f[i] == X_g[i]`` (either way round)."""
        if not isinstance(cmp, vnnlib.Equal):
            return None
        sides = [self.linear(cmp.lhs), self.linear(cmp.rhs)]
        if not all(len(c) == 1 and k == 0.0 and next(iter(c.values())) == 1.0
                   and next(iter(c))[0] == "X" for c, k, _ in sides):
            return None
        (a,), (b,) = sides[0][2], sides[1][2]
        (ka,), (kb,) = sides[0][0], sides[1][0]
        return ka[1] if a != b and ka == kb else None


def _index(indices: Sequence[int]) -> str:
    return f"[{','.join(str(i) for i in indices)}]" if indices else ""


def _check_depth(text: str, source: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` before the package sees it: its parser
    recurses per level in C++, and a deep enough file ends the process (a segmentation fault)."""
    code = np.frombuffer(_COMMENT.sub("", text).encode("utf-8"), np.uint8)
    parens = code[(code == ord("(")) | (code == ord(")"))]
    if parens.size and np.cumsum(np.where(parens == ord("("), 1, -1)).max() > MAX_DEPTH:
        raise SpecError(f"{source}: nests parentheses more than {MAX_DEPTH} deep, more than the "
                        "vnnlib package reads safely (docs/formats.md); flatten nested (and ...) "
                        "and (or ...) into one")


def _parse(text: str, source: str) -> tuple[vnnlib.Query, _Vars, list[list[cst.Atom]]]:
    _check_depth(text, source)
    try:
        query = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as e:
        why = _condense(e)
        bad = _NOT_FINITE.search(why)
        if bad:  # the package reads nan and inf as names
            kind = "a NaN" if "nan" in bad.group(2).lower() else "an infinite"
            raise SpecError(f"{source}: line {bad.group(1)}: '{bad.group(2)}' is {kind} bound, "
                            "not a number nnbisim can use; give a finite number") from None
        raise SpecError(f"{source}: not valid VNN-LIB 2.0: {why}") from None
    except (IndexError, ValueError, RuntimeError) as e:  # std::stod and friends, via pybind11
        raise SpecError(f"{source}: the vnnlib package cannot read it ({type(e).__name__}: "
                        f"{e}); a number is probably out of the double range") from None
    nets = query.networks
    if len(nets) not in (1, 2):
        raise SpecError(f"{source}: declares {len(nets)} networks; nnbisim reads queries over "
                        "one network or two (an equivalence query)")
    vars_ = _Vars(nets, source)
    coupled: set[int] = set()
    parts = []
    for assertion in query.assertions:
        dnf = [[c for c in conj] for conj in assertion.expr.to_dnf()]
        if len(nets) == 2 and len(dnf) == 1:
            ties = [(c, vars_.coupling(c)) for c in dnf[0]]
            coupled |= {i for _, i in ties if i is not None}
            dnf = [[c for c, i in ties if i is None]]
        parts.append(dnf)
    if len(nets) == 2 and len(coupled) != vars_.n_in:  # inputs related otherwise: z = [x_f; x_g]
        vars_ = _Vars(nets, source, separate=True)
        parts = [[list(conj) for conj in a.expr.to_dnf()] for a in query.assertions]
    atoms = [[[a for c in conj for a in vars_.atoms(c)] for conj in dnf] for dnf in parts]
    return query, vars_, cst.dnf_product(atoms, source)


def _cases(vars_: _Vars, n_cols: int, conjunctions: list[list[cst.Atom]],
           source: str) -> list[SpecCase]:
    many = len(conjunctions) > 1
    cases = [cst.case_from_atoms(atoms, vars_.n_in, n_cols, vars_.display,
                                 f"{source} (disjunct {j + 1})" if many else source)
             for j, atoms in enumerate(conjunctions)]
    return cst.group_cases(cases, source)


def parse_cases(text: str, source: str = "<string>") -> list[SpecCase]:
    """The (box, unsafe set) cases of a single-network VNN-LIB 2.0 text."""
    query, vars_, conj = _parse(text, source)
    if len(query.networks) != 1:
        raise SpecError(f"{source}: is a two-network query; read it with parse_query")
    return _cases(vars_, vars_.n_out, conj, source)


def parse_query(text: str, source: str = "<string>") -> Query:
    """A :class:`Property` (one network), :class:`TwoNetworkQuery` (two fed the same input)
    or :class:`~nnbisim.specs.coupled.CoupledQuery` (two whose inputs are otherwise related)
    from 2.0 text."""
    query, vars_, conj = _parse(text, source)
    nets = query.networks
    if vars_.separate:
        f, g = nets
        return coupled_from_atoms(conj, vars_.n_in, vars_.n_out, vars_.display, source, partial(
            CoupledQuery, n_outputs=vars_.n_out, first=f.name, second=g.name,
            relation=_relation(f, g), input_shape=vars_.in_shape, output_shape=vars_.out_shape))
    inputs, unsafe = cst.split_cases(_cases(vars_, vars_.n_out * len(nets), conj, source), source)
    if len(nets) == 1:
        return Property(inputs, unsafe, vars_.n_out, vars_.in_shape, vars_.out_shape)
    f, g = nets
    return TwoNetworkQuery(inputs, unsafe, vars_.n_out, f.name, g.name, _relation(f, g),
                           vars_.in_shape, vars_.out_shape)


def _relation(f: vnnlib.Network, g: vnnlib.Network) -> str | None:
    return ("isomorphic-to" if g.isometric_to == f.name
            else "equal-to" if g.equal_to == f.name else None)


def read_query(path: PathLike) -> Query:
    """The property or two-network query of a VNN-LIB 2.0 file (plain or gzip'd)."""
    return parse_query(read_text(path), str(path))


def _num(x: float) -> str:
    x = cst.check_writable(x)
    text = format(Decimal(repr(x)), "f")
    return text if "." in text else text + ".0"


def _check_dtype(dtype: str) -> None:
    if dtype not in WRITABLE_DTYPES:
        raise SpecError(f"element type {dtype!r} cannot be written; use one of "
                        f"{', '.join(WRITABLE_DTYPES)} (the ONNX type of the network)")


def _check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise SpecError(f"{what} {name!r} is not a VNN-LIB name; use a letter followed by "
                        "letters, digits or '_'")
    return name


def _shape(shape: Sequence[int] | None, fallback: tuple[int, ...], size: int,
           what: str) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape) if shape is not None else (fallback or (1, size))
    if any(d < 1 for d in dims) or int(np.prod(dims)) != size:
        raise SpecError(f"{what} shape {list(dims)} does not hold {size} values; give a shape "
                        f"whose dimensions multiply to {size}")
    return dims


def _element(name: str, shape: tuple[int, ...]):
    def var(flat: int) -> str:
        if not shape:
            return name
        return name + _index([int(i) for i in np.unravel_index(flat, shape)])
    return var


def _declare(net: str, x: str, y: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
             dtype: str, relation: str | None = None, other: str | None = None) -> list[str]:
    def dims(s: tuple[int, ...]) -> str:
        return f"[{','.join(str(d) for d in s)}]"

    rel = [f"  ({relation} {other})"] if relation else []
    return [f"(declare-network {net}", *rel,
            f"  (declare-input {x} {dtype} {dims(in_shape)})",
            f"  (declare-output {y} {dtype} {dims(out_shape)}))"]


def write_vnnlib2(prop: Property, input_shape: Sequence[int] | None = None,
                  output_shape: Sequence[int] | None = None, path: PathLike | None = None,
                  network_name: str = "N", *, dtype: str = "float32") -> str:
    """The VNN-LIB 2.0 text of ``prop`` over network ``network_name`` (written to ``path``).

    Shapes default to the property's own, else ``[1, n]``.
    """
    ins = _shape(input_shape, prop.input_shape, prop.n_inputs, "input")
    outs = _shape(output_shape, prop.output_shape, prop.n_outputs, "output")
    _check_name(network_name, "network name")
    _check_dtype(dtype)
    lines = ["(vnnlib-version <2.0>)", "",
             *_declare(network_name, "X", "Y", ins, outs, dtype), "", "; input set",
             *cst.format_boxes(prop.inputs.boxes, _element("X", ins), _num), "",
             "; unsafe outputs",
             *cst.format_unsafe(prop.unsafe, _element("Y", outs), _num, True, strict=True)]
    return _finish(lines, path)


def write_two_network_query(q: TwoNetworkQuery, input_shape: Sequence[int] | None = None,
                            output_shape: Sequence[int] | None = None,
                            path: PathLike | None = None, *, dtype: str = "float32") -> str:
    """The VNN-LIB 2.0 text of a two-network query (written to ``path`` when given)."""
    f, g = _check_name(q.first, "network name"), _check_name(q.second, "network name")
    _check_dtype(dtype)
    ins = _shape(input_shape, q.input_shape, q.n_inputs, "input")
    outs = _shape(output_shape, q.output_shape, q.n_outputs, "output")
    xf, xg = _element(f"X_{f}", ins), _element(f"X_{g}", ins)
    yf, yg = _element(f"Y_{f}", outs), _element(f"Y_{g}", outs)

    def y(col: int) -> str:
        return yf(col) if col < q.n_outputs else yg(col - q.n_outputs)

    lines = ["(vnnlib-version <2.0>)", "",
             *_declare(f, f"X_{f}", f"Y_{f}", ins, outs, dtype),
             *_declare(g, f"X_{g}", f"Y_{g}", ins, outs, dtype, q.relation, f), "",
             f"; {g} gets the same input as {f}",
             *(f"(assert (== {xf(i)} {xg(i)}))" for i in range(q.n_inputs)), "",
             "; input set", *cst.format_boxes(q.inputs.boxes, xf, _num), "",
             f"; unsafe outputs over [Y_{f} ; Y_{g}]",
             *cst.format_unsafe(q.unsafe, y, _num, True, strict=True)]
    return _finish(lines, path)


def _finish(lines: list[str], path: PathLike | None) -> str:
    text = "\n".join(lines) + "\n"
    if path is not None:
        write_text(path, text)
    return text
