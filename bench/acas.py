"""ACAS Xu for the benches: the VNN-COMP 2021 instance list, short names, and compressed copies
of a network written once under bench/work/copies."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from harness import DATA, WORK

from nnbisim.adapters.compress import compress
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import CompressOptions, DistillOptions
from nnbisim.specs.io import read_spec_cases

ACAS = DATA / "acasxu"
NETWORKS = [f"{i}_{j}" for i in range(1, 6) for j in range(1, 10)]
# the copies the benches compare against: 10% of the hidden neurons pruned by magnitude
# (zeroed), or a 5-10-10-5 network distilled on 50,000 points of the property's boxes
COPIES = CompressOptions(fraction=0.1, distill=DistillOptions(samples=50_000))


def network_file(net: str) -> Path:
    return ACAS / f"ACASXU_run2a_{net}_batch_2000.onnx"


def instances() -> list[tuple[str, str, float]]:
    """The csv's instances: (network file, property file, timeout)."""
    return [(r[0], r[1], float(r[2]))
            for r in csv.reader((ACAS / "acasxu_instances.csv").open())]


def short(net_file: str, prop_file: str) -> tuple[str, str]:
    """``("1_1", "2")`` for ``ACASXU_run2a_1_1_batch_2000.onnx`` and ``prop_2.vnnlib``."""
    return (net_file.replace("ACASXU_run2a_", "").replace("_batch_2000.onnx", ""),
            prop_file.replace("prop_", "").replace(".vnnlib", ""))


def by_name() -> dict[tuple[str, str], tuple[str, str, float]]:
    """The csv's instances by short name."""
    return {short(n, p): (n, p, t) for n, p, t in instances()}


def chosen(text: str) -> list[tuple[str, str]]:
    """``"1_1:2,3_3:9"`` as short names; refuses one the csv does not have."""
    known = by_name()
    out = [tuple(s.split(":")) for s in text.split(",") if s]
    missing = [k for k in out if k not in known]
    if missing:
        raise SystemExit(f"no instance {missing[0][0]}:{missing[0][1]} in the csv")
    return out  # type: ignore[return-value]


def spread(rows: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """The csv's instances round robin over the properties (the first instance of each
    property, then the second, ...), so a run stopped part way covers every property."""
    by_prop: dict[str, list] = {}
    for r in rows:
        by_prop.setdefault(r[1], []).append(r)
    out, k = [], 0
    while len(out) < len(rows):
        out += [group[k] for group in by_prop.values() if k < len(group)]
        k += 1
    return out


def copy(net: str, compression: str, prop: str | None = None) -> Path:
    """The network compressed by ``compression`` (distillation over property ``prop``'s boxes),
    written once to bench/work/copies (written whole, so parallel benches never read half a
    file)."""
    tag = compression if compression != "distill" else f"distill_p{prop}"
    out = WORK / "copies" / f"ACASXU_run2a_{net}_{tag}.onnx"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    original = load_network(network_file(net))
    lower = upper = None
    if compression == "distill":
        cases = read_spec_cases(ACAS / f"prop_{prop}.vnnlib")
        lower = np.array([c.box.lower for c in cases])
        upper = np.array([c.box.upper for c in cases])
    n2 = compress(original, compression, lower, upper, COPIES)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    save_model(network_to_model(n2), tmp, force=True)
    tmp.replace(out)
    return out
