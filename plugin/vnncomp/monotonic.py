"""Monotonicity benchmarks in the form of VNN-COMP 2026's ``monotonic_acasxu_2026``.

Each instance asks of one ACAS Xu network ``f`` (and ``g``, declared ``(equal-to f)``, the same
file): inside a box, with ``X_f[0] <= X_g[0]`` (the intruder further away for ``g``), the other
inputs equal and ``X_g[0]`` in the same range, can output ``j`` of ``f`` be strictly below that
of ``g`` (``(< Y_f[j] Y_g[j])``)? A counterexample must satisfy the strict relation on the
networks: with ``f = g`` the diagonal ``X_f = X_g`` gives equality, which does not count.
Boxes and networks are drawn with numpy's ``default_rng(seed)``; expected answers are not
known in advance (the competition's instances were all ``sat``).
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.specs._text import write_text

# ACAS Xu's normalised input domain (the networks' own clipping ranges)
DOMAIN_LO = np.array([-0.328422877, -0.5, -0.5, -0.5, -0.5])
DOMAIN_HI = np.array([0.679857769, 0.5, 0.5, 0.5, 0.5])
WIDTHS = (0.25, 0.8)  # of X[0]'s range: the interval's width is drawn in this span
SIDE = 0.25  # width of the X[1], X[2] ranges; X[3], X[4] are fixed points


@dataclass(frozen=True)
class Instance:
    network: str  # e.g. "1_1"
    output: int
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def draw(rng: np.random.Generator) -> Instance:
    """One instance: a network, an output and a box (X[0] an interval, X[1], X[2] intervals of
    width SIDE, X[3], X[4] points)."""
    net = f"{rng.integers(1, 6)}_{rng.integers(1, 10)}"
    span = DOMAIN_HI - DOMAIN_LO
    width = np.array([rng.uniform(*WIDTHS) * span[0], SIDE, SIDE, 0.0, 0.0])
    lo = DOMAIN_LO + rng.uniform(0.0, 1.0, 5) * (span - width)
    lo = np.round(lo, 6)
    hi = np.round(lo + width, 6)
    return Instance(net, int(rng.integers(0, 5)), tuple(lo.tolist()), tuple(hi.tolist()))


def query_text(inst: Instance) -> str:
    """The VNN-LIB 2.0 text of one instance."""
    lines = ["; monotonicity in X[0] (distance to the intruder), written by nnbisim", "",
             "(vnnlib-version <2.0>)", "",
             "(declare-network f", "    (declare-input X_f real [5])",
             "    (declare-output Y_f real [5])", ")",
             "(declare-network g", "    (equal-to f)", "    (declare-input X_g real [5])",
             "    (declare-output Y_g real [5])", ")", "", "; input constraints"]
    for i, (lo, hi) in enumerate(zip(inst.lower, inst.upper, strict=True)):
        lines.append(f"(assert (== X_f[{i}] {lo!r}))" if lo == hi else
                     f"(assert (and (<= X_f[{i}] {hi!r}) (>= X_f[{i}] {lo!r})))")
    lines += ["(assert (<= X_f[0] X_g[0]))",
              f"(assert (and (<= X_g[0] {inst.upper[0]!r}) (>= X_g[0] {inst.lower[0]!r})))",
              *(f"(assert (== X_f[{i}] X_g[{i}]))" for i in range(1, 5)), "",
              "; output constraint: the violation",
              f"(assert (< Y_f[{inst.output}] Y_g[{inst.output}]))"]
    return "\n".join(lines) + "\n"


def write_monotonic(data: str | Path, out: str | Path, count: int = 50, seed: int = 0,
                    timeout: float = 100.0, gzip: bool = False, form: str = "gemm",
                    force: bool = False) -> list[list[str]]:
    """Write ``count`` instances under ``out`` (``onnx/``, ``vnnlib/``, ``instances.csv``)
    from the ACAS Xu folder ``data``; ``gzip`` writes ``.onnx.gz``/``.vnnlib.gz`` (as VNN-COMP
    2026 ships them), ``form`` the networks' ONNX form (``matmul-1d``: input [5], weight
    first). Returns the rows of ``instances.csv``."""
    data, out = Path(data), Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OverwriteError(f"{out}: exists and is not empty; pass --force or choose another "
                             "folder")
    for sub in ("onnx", "vnnlib"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ext = ".gz" if gzip else ""
    rows = []
    for k in range(count):
        inst = draw(rng)
        src = data / f"ACASXU_run2a_{inst.network}_batch_2000.onnx"
        if not src.is_file():
            raise InputError(f"{src}: no such ACAS Xu network; give the ACAS Xu folder")
        onnx_name = f"onnx/ACASXU_run2a_{inst.network}_batch_2000.onnx{ext}"
        if not (out / onnx_name).exists():
            if gzip or form != "gemm":
                save_model(network_to_model(load_network(src), form=form), out / onnx_name)
            else:
                shutil.copyfile(src, out / onnx_name)
        spec = f"vnnlib/monotonic_{k}.vnnlib{ext}"
        write_text(out / spec, query_text(inst))
        rows.append([f"[('f', '{onnx_name}'), ('g', '{onnx_name}')]", spec, f"{timeout:g}"])
    with (out / "instances.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return rows
