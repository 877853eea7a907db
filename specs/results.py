"""VNN-COMP result files: the first word (``sat``, ``unsat``, ``timeout``, ``unknown``,
``error``) and, after ``sat``, the counterexample: for a VNN-LIB 1.0 property the assignments
``((X_0 v) ... (Y_0 v) ...)``; for 2.0, for each declared variable in order a header line
``NAME TYPE [shape]`` and its values one per line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nnbisim.core.errors import SpecError
from nnbisim.core.verdict import Status
from nnbisim.specs._text import write_text

RESULT_WORDS = ("sat", "unsat", "timeout", "unknown", "error")

_VNNCOMP_WORDS = {"sat": Status.VIOLATED, "violated": Status.VIOLATED, "unsat": Status.HOLDS,
                  "holds": Status.HOLDS, "timeout": Status.TIMEOUT, "unknown": Status.UNKNOWN,
                  "error": Status.ERROR}

_ASSIGNMENT = re.compile(r"\(\s*X_(\d+)\s+([^\s()]+)\s*\)")



def parse_vnncomp_result(text: str) -> tuple[Status, np.ndarray | None, str]:
    """Status, counterexample input (for ``sat``, else ``None``) and a note from a result file.

    The file starts with sat/unsat/timeout/unknown/error; a ``sat`` is followed by VNN-COMP 1.0
    assignments ``((X_0 v) ... (Y_0 v) ...)``. Only the inputs are kept: outputs are replayed.
    """
    words = text.split()
    word = words[0].lower() if words else ""
    status = _VNNCOMP_WORDS.get(word)
    if status is None:
        return Status.ERROR, None, f"unreadable result {word[:40]!r}"
    if status is not Status.VIOLATED:
        return status, None, ""
    found = {int(i): v for i, v in _ASSIGNMENT.findall(text)}
    try:
        x = np.array([float(found[i]) for i in range(len(found))], dtype=np.float64)
    except (KeyError, ValueError):
        return status, None, "the counterexample's X_i assignments are unreadable"
    return status, (x if x.size else None), ""


def _num(v: float) -> str:
    return repr(float(v))


def counterexample_1_0(x: np.ndarray, y: np.ndarray) -> str:
    """VNN-COMP 2021-2025 counterexample: ``((X_0 v)`` ... ``(Y_0 v))``."""
    items = [f"(X_{i} {_num(v)})" for i, v in enumerate(np.ravel(x))]
    items += [f"(Y_{i} {_num(v)})" for i, v in enumerate(np.ravel(y))]
    return "(" + "\n ".join(items) + ")\n"


def assignment_2_0(variables: list[tuple[str, str, tuple[int, ...], np.ndarray]]) -> str:
    """VNN-LIB 2.0 textual assignment: per variable ``NAME TYPE [d1,d2]`` and its values in
    row-major order, one per line."""
    lines = []
    for name, dtype, shape, values in variables:
        flat = np.ravel(values)
        if int(np.prod(shape)) != flat.size:
            raise SpecError(f"{name}: {flat.size} values for shape {list(shape)}")
        lines.append(f"{name} {dtype} [{','.join(str(d) for d in shape)}]")
        lines += [_num(v) for v in flat]
    return "\n".join(lines) + "\n"


def parse_assignment_2_0(text: str) -> dict[str, np.ndarray]:
    """The tensors of a VNN-LIB 2.0 textual assignment (after the ``sat`` line): per variable
    ``NAME TYPE [d1,d2]`` then its values, flattened; raises :class:`SpecError` when a value is
    not a number or a variable's count does not fill its shape."""
    out: dict[str, np.ndarray] = {}
    name, shape, values = None, (), []

    def close() -> None:
        if name is not None:
            if len(values) != int(np.prod(shape)):
                raise SpecError(f"{name}: {len(values)} values for shape {list(shape)}")
            out[name] = np.array(values, dtype=np.float64)
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].lower() == "sat":
            continue
        if len(parts) == 3 and parts[2].startswith("[") and parts[2].endswith("]"):
            close()
            name, values = parts[0], []
            dims = parts[2][1:-1].replace(" ", "")
            shape = tuple(int(d) for d in dims.split(",") if d)
            continue
        try:
            values += [float(v) for v in parts]
        except ValueError:
            raise SpecError(f"assignment line {line.strip()[:40]!r} is not a number") from None
        if name is None:
            raise SpecError("an assignment value comes before any NAME TYPE [shape] line")
    close()
    return out


def write_result(path: Path, word: str, counterexample: str = "") -> None:
    if word not in RESULT_WORDS:
        raise ValueError(f"result word must be one of {RESULT_WORDS}, not {word!r}")
    write_text(path, word + "\n" + (counterexample if word == "sat" else ""))
