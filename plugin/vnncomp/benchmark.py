"""Equivalence benchmarks with known answers, in VNN-COMP's layout, VNN-LIB 1.0 and 2.0.

For each pair (N1, N2, region) eps is bracketed once (witnessed w, certified c) and two
instances are written on both sides of it: "is some ``|y1 - y2|_i >= c'``" with ``c'`` 1-2%
above ``c`` (known answer ``unsat``: a proof) and with ``0.85..0.95 x w`` (known answer ``sat``:
the witness is kept). The folder::

    onnx/               the networks of every pair and their merged comparison networks
    vnnlib/             the merged single-network instances (VNN-LIB 1.0)
    instances.csv       merged ONNX, property, timeout
    expected.csv        onnx,vnnlib,expected
    2.0/                the same instances as two-network VNN-LIB 2.0 queries, with its own
                        onnx/, vnnlib/, instances.csv (the 2026 network field) and expected.csv
    benchmark.json      eps brackets, witnesses, regions: what the properties are made from
    generate_properties.py   regenerates vnnlib/, 2.0/vnnlib/ and the csvs from a seed
    README.md

The seed picks where in those safe ranges each threshold lies and the order of the instances;
the answers never change with it. ``generate_properties.py SEED`` reproduces the files byte
for byte from ``benchmark.json``.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from nnbisim.adapters.compress import compress
from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import COMPRESSIONS, CompressOptions, DistillOptions
from nnbisim.bounds.diffbounds import same_architecture
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.specs.discrepancy import infinity_norm_property, two_network_infinity_norm_query
from nnbisim.specs.io import read_spec
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_two_network_query
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions
from nnbisim.vnncomp.formats import format_network_field, write_instances

SAT_FACTORS = (0.85, 0.95)  # sat-side threshold: this fraction of the witnessed eps
# unsat-side threshold: certified eps times 1.01 to 1.02 (a margin far above float32 noise)
UNSAT_FACTORS = (1.01, 1.02)

GENERATOR = '''#!/usr/bin/env python3
"""Regenerate this benchmark's properties and csv files from a seed (needs nnbisim installed:
pip install -e <nnbisim repository>). Usage: python generate_properties.py SEED"""
import sys
from pathlib import Path

from nnbisim.vnncomp.benchmark import regenerate

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].lstrip("-").isdigit():
        sys.exit("usage: python generate_properties.py SEED")
    regenerate(Path(__file__).resolve().parent, int(sys.argv[1]))
'''


@dataclass(frozen=True)
class Pair:
    """One line of PAIRS.csv: two networks and the VNN-LIB file whose input set is the region."""

    n1: Path
    n2: Path
    region: Path


def read_pairs(path: str | Path) -> list[Pair]:
    """``n1.onnx,n2.onnx,region.vnnlib`` per line, paths relative to the csv's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such PAIRS.csv; give lines n1.onnx,n2.onnx,region.vnnlib")
    pairs = []
    with path.open(newline="") as f:
        for k, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row) or row[0].startswith("#"):
                continue
            if len(row) != 3:
                raise InputError(f"{path}:{k}: {len(row)} fields; each line is "
                                 "n1.onnx,n2.onnx,region.vnnlib")
            files = [path.parent / c.strip() for c in row]
            for p in files:
                if not p.is_file():
                    raise InputError(f"{path}:{k}: {p} does not exist")
            pairs.append(Pair(*files))
    if not pairs:
        raise InputError(f"{path}: no pairs; each line is n1.onnx,n2.onnx,region.vnnlib")
    return pairs


def _onnx_shape(path: Path) -> list[int]:
    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits][0]
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in real.type.tensor_type.shape.dim]
    return dims or [1]


def _pair_record(k: int, pair: Pair, out: Path, eps_budget: float) -> dict:
    """Bracket eps of one pair, copy its networks and write its merged network: the pair's
    record in ``benchmark.json``."""
    inputs = read_spec(pair.region).inputs
    rep = compute_epsilon(pair.n1, pair.n2, inputs,
                          EpsilonOptions(rel_gap=0.01, time_budget=eps_budget))
    if not rep.witnessed > 0:
        raise InputError(f"{pair.n1.name} and {pair.n2.name} do not differ over "
                         f"{pair.region.name} (witnessed eps 0): no sat instance can be made")
    names = [f"p{k}_n1_{pair.n1.stem}.onnx", f"p{k}_n2_{pair.n2.stem}.onnx"]
    for src, dst in zip((pair.n1, pair.n2), names, strict=True):
        shutil.copyfile(src, out / "onnx" / dst)
        shutil.copyfile(src, out / "2.0" / "onnx" / dst)
    merged = f"p{k}_merged.onnx"
    model = merge_files(pair.n1, pair.n2, outputs="all")
    onnx.checker.check_model(model)
    onnx.save(model, str(out / "onnx" / merged))
    same = same_architecture(load_network(pair.n1), load_network(pair.n2))
    return {"pair": k, "n1": names[0], "n2": names[1], "merged": merged,
            "source": [str(pair.n1), str(pair.n2), str(pair.region)],
            "region": pair.region.name, "lower": [b.lower.tolist() for b in inputs.boxes],
            "upper": [b.upper.tolist() for b in inputs.boxes],
            "input_shape": _onnx_shape(pair.n1), "n_outputs": len(rep.outputs),
            "relation": "isomorphic-to" if same else None,
            "witnessed": rep.witnessed, "certified": rep.certified,
            "witness": rep.witness_x.tolist(), "engine": rep.engine,
            "eps_seconds": round(rep.seconds, 2)}


def write_benchmark(pairs: list[Pair], out: str | Path, *, seed: int = 0, timeout: float = 60.0,
                    eps_budget: float = 30.0, name: str = "nnbisim_equivalence",
                    force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Bracket eps for every pair and write the benchmark folder (see the module docstring)."""
    say = progress or (lambda _m: None)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise OverwriteError(f"{out}: exists and is not empty; pass --force to overwrite or "
                             "choose another --out")
    for sub in ("onnx", "vnnlib", "2.0"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "2.0" / "onnx").mkdir(parents=True, exist_ok=True)
    records = []
    for k, pair in enumerate(pairs):
        say(f"[{k + 1}/{len(pairs)}] eps of {pair.n1.name} vs {pair.n2.name} over "
            f"{pair.region.name}")
        records.append(_pair_record(k, pair, out, eps_budget))
    info = {"name": name, "timeout": timeout, "eps_budget": eps_budget, "pairs": records}
    (out / "benchmark.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "generate_properties.py").write_text(GENERATOR)
    regenerate(out, seed)
    return out


def _instances(info: dict, seed: int) -> list[dict]:
    """The instances a seed makes: per pair a sat and an unsat threshold, in seeded order."""
    rng = np.random.default_rng(seed)
    rows = []
    for rec in info["pairs"]:
        u, f = rng.uniform(*UNSAT_FACTORS), rng.uniform(*SAT_FACTORS)
        rows.append({"rec": rec, "side": "unsat",
                     "eps": float(np.nextafter(rec["certified"] * u, np.inf))})
        rows.append({"rec": rec, "side": "sat", "eps": float(f * rec["witnessed"])})
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def regenerate(folder: str | Path, seed: int) -> None:
    """Write the properties, ``instances.csv``, ``expected.csv`` (both versions) and README
    of a benchmark folder from its ``benchmark.json`` and ``seed``."""
    folder = Path(folder)
    meta = folder / "benchmark.json"
    if not meta.is_file():
        raise InputError(f"{folder}: has no benchmark.json; run nnbisim vnncomp benchmark first")
    info = json.loads(meta.read_text())
    v2 = folder / "2.0"
    for d in (folder / "vnnlib", v2 / "vnnlib"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    rows1, rows2, exp1, exp2 = [], [], [], []
    timeout = float(info["timeout"])
    for inst in _instances(info, seed):
        rec, side, eps = inst["rec"], inst["side"], inst["eps"]
        m = rec["n_outputs"]
        inputs = InputSet(tuple(Box(lo, hi) for lo, hi in zip(rec["lower"], rec["upper"],
                                                             strict=True)))
        stem = f"p{rec['pair']}_{side}"
        note = (f"pair {rec['pair']}: is some |y1 - y2|_i >= {eps!r} over {rec['region']}? "
                f"expected {side} (eps in [{rec['witnessed']!r}, {rec['certified']!r}]); "
                f"outputs Y_0..Y_{m - 1} = y1, Y_{m}..Y_{2 * m - 1} = y2, "
                f"Y_{2 * m}..Y_{3 * m - 1} = y1 - y2")
        write_vnnlib1(infinity_norm_property(inputs, 3 * m, eps, offset=2 * m),
                      folder / "vnnlib" / f"{stem}.vnnlib", comment=note)
        query = two_network_infinity_norm_query(inputs, m, eps, relation=rec["relation"])
        write_two_network_query(query, rec["input_shape"], [1, m],
                                v2 / "vnnlib" / f"{stem}.vnnlib")
        rows1.append((f"onnx/{rec['merged']}", f"vnnlib/{stem}.vnnlib", timeout))
        exp1.append((f"onnx/{rec['merged']}", f"vnnlib/{stem}.vnnlib", side))
        field = format_network_field([("f", f"onnx/{rec['n1']}"), ("g", f"onnx/{rec['n2']}")])
        rows2.append((field, f"vnnlib/{stem}.vnnlib", timeout))
        exp2.append((field, f"vnnlib/{stem}.vnnlib", side))
    write_instances(folder / "instances.csv", rows1)
    write_instances(v2 / "instances.csv", rows2)
    for path, rows in ((folder / "expected.csv", exp1), (v2 / "expected.csv", exp2)):
        with path.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["onnx", "vnnlib", "expected"])
            w.writerows(rows)
    (folder / "README.md").write_text(_readme(info, seed))


def _readme(info: dict, seed: int) -> str:
    lines = [f"# {info['name']}", "",
             "Equivalence instances with known answers, generated by nnbisim "
             "(`nnbisim vnncomp benchmark`). Each pair of networks N1, N2 gets two instances "
             "over its region X: \"is some |N1(x) - N2(x)|_i >= t for x in X?\" with t just "
             "1-2% above the certified eps (expected `unsat`) and t = 0.85..0.95 x the witnessed "
             "eps (expected `sat`; the witness is in benchmark.json).", "",
             "- `instances.csv`, `vnnlib/`: one network per instance, the merged comparison "
             "network `onnx/pK_merged.onnx` (outputs [y1; y2; y1 - y2]), VNN-LIB 1.0.",
             "- `2.0/`: the same questions as two-network VNN-LIB 2.0 queries on the original "
             "pair (`declare-network f`, `g`, inputs tied by `==`), network field "
             "`[('f', ...), ('g', ...)]`.",
             "- `expected.csv` beside each `instances.csv`: the known answers.",
             f"- Regenerate: `python generate_properties.py {seed}` (this folder was written "
             f"with seed {seed}); the seed moves the thresholds inside their safe ranges and "
             "orders the instances, never the answers.", "",
             f"Timeout per instance: {info['timeout']:g} s. eps was bracketed by nnbisim's own "
             f"engine ({info['eps_budget']:g} s per pair):", "",
             "| pair | N1 | N2 | region | eps witnessed | eps certified | engine |",
             "|---|---|---|---|---:|---:|---|"]
    for r in info["pairs"]:
        lines.append(f"| {r['pair']} | {r['n1']} | {r['n2']} | {r['region']} | "
                     f"{r['witnessed']:.6g} | {r['certified']:.6g} | {r['engine']} |")
    return "\n".join(lines) + "\n"


TAGS = {"float16": "float16", "prune": "pruned10", "int8": "int8", "int8-channel": "int8ch"}


def acasxu_pairs(data: str | Path, work: str | Path, networks: list[str],
                 properties: list[int], compression: str, seed: int = 0) -> list[Pair]:
    """Pairs (ACAS Xu network, compressed copy, property region) from the ACAS Xu folder
    ``data`` (``ACASXU_run2a_I_J_batch_2000.onnx``, ``prop_K.vnnlib``); the copies are written
    to ``work`` (:func:`~nnbisim.adapters.compress.compress`): ``float16`` rounds every weight,
    ``prune`` zeroes the 10% of hidden neurons of smallest magnitude (same layer sizes),
    ``distill`` trains a 5-10-10-5 network on the original's outputs over the property's region
    (50,000 samples, seeded), ``int8``/``int8-channel`` quantize the weights."""
    if compression not in COMPRESSIONS:
        raise InputError(f"unknown compression {compression!r}; use one of "
                         f"{', '.join(COMPRESSIONS)}")
    data, work = Path(data), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    opts = CompressOptions(fraction=0.1, distill=DistillOptions(samples=50_000, seed=seed))
    pairs = []
    for net in networks:
        src = data / f"ACASXU_run2a_{net}_batch_2000.onnx"
        if not src.is_file():
            raise InputError(f"{src}: no such ACAS Xu network; networks are named like 1_1 .. "
                             "5_9 and --data must be the ACAS Xu folder")
        original = load_network(src)
        for prop in properties:
            region = data / f"prop_{prop}.vnnlib"
            if not region.is_file():
                raise InputError(f"{region}: no such property file in --data")
            boxes = read_spec(region).inputs.boxes
            tag = TAGS.get(compression, f"distilled_p{prop}")
            dst = work / f"ACASXU_run2a_{net}_{tag}.onnx"
            if not dst.exists():
                copy = compress(original, compression, np.array([b.lower for b in boxes]),
                                np.array([b.upper for b in boxes]), opts)
                save_model(network_to_model(copy), dst, force=True)
            pairs.append(Pair(src, dst, region))
    return pairs
