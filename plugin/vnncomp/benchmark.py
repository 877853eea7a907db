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
                        (file names relative to the folder; the sources' names as provenance)
    generate_properties.py   regenerates vnnlib/, 2.0/vnnlib/ and the csvs from a seed
    README.md

The seed picks where in those safe ranges each threshold lies and the order of the instances;
the answers never change with it. ``generate_properties.py SEED`` is
:mod:`nnbisim.vnncomp.generate_properties` copied verbatim: it needs Python and numpy only (not
nnbisim, not the source networks), and with the seed recorded in ``benchmark.json`` it
reproduces the shipped files byte for byte, wherever the folder has been moved.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nnbisim.adapters.compress import compress
from nnbisim.adapters.executor import Executor, one_torch_thread, run_here
from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_load import load_network, read_model
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import COMPRESSIONS, CompressOptions, DistillOptions
from nnbisim.bounds.diffbounds import same_architecture
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.core.pool import OK, Outcome, Unit
from nnbisim.core.verdict import Status
from nnbisim.specs.io import read_input_set
from nnbisim.specs.sets import InputSet
from nnbisim.tasks.agree import decide_agreement
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions
from nnbisim.vnncomp import generate_properties as generator
from nnbisim.vnncomp.formats import PARTIAL, resumable


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


def _onnx_shapes(path: Path) -> tuple[list[int], list[int]]:
    """The declared input and output shapes of a file (symbolic dimensions as 1)."""
    model = read_model(path)
    inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name not in inits][0]

    def dims(info) -> list[int]:
        return [d.dim_value if d.dim_value > 0 else 1
                for d in info.type.tensor_type.shape.dim] or [1]
    return dims(real), dims(model.graph.output[0])


@dataclass(frozen=True)
class FileForm:
    """What the folder holds and how: gzip'd files (``.onnx.gz``, ``.vnnlib.gz``), the networks'
    ONNX form (:data:`~nnbisim.adapters.onnx_write.FORMS`; ``gemm`` copies the files), the
    question asked, the benchmark's name."""

    gzip: bool = False
    form: str = "gemm"
    question: str = "eps"  # or "top1": top-1 agreement where N1 leads by more than delta
    name: str = "nnbisim_equivalence"  # the benchmark's name (its README's title)


def _stem(path: Path) -> str:
    return path.name.removesuffix(".gz").removesuffix(".onnx")


def _eps_fields(pair: Pair, inputs: InputSet, budget: float) -> dict:
    """eps of the pair, bracketed: its ``sat`` side is below the witnessed value, its ``unsat``
    side above the certified one."""
    rep = compute_epsilon(pair.n1, pair.n2, inputs,
                          EpsilonOptions(rel_gap=0.01, time_budget=budget))
    if not rep.witnessed > 0:
        raise InputError(f"{pair.n1.name} and {pair.n2.name} do not differ over "
                         f"{pair.region.name} (witnessed eps 0): no sat instance can be made")
    return {"n_outputs": len(rep.outputs), "witnessed": rep.witnessed,
            "certified": rep.certified, "witness": rep.witness_x.tolist(),
            "engine": rep.engine, "eps_seconds": round(rep.seconds, 2)}


def _top1_fields(pair: Pair, inputs: InputSet, budget: float) -> dict:
    """Top-1 agreement of the pair: a replayed disagreement where N1 leads by ``lead`` (so
    delta-top-1 is violated for every delta below it) and the smallest delta of
    ``lead * 4^j`` proved to hold, each try given an eighth of the budget (so it holds for
    every delta above it)."""
    t0 = time.perf_counter()
    a = decide_agreement(pair.n1, pair.n2, inputs, 0.0, budget / 2)
    if a.status is not Status.VIOLATED or a.logits is None:
        raise InputError(f"{pair.n1.name} and {pair.n2.name}: no disagreement of their top "
                         f"classes found over {pair.region.name} ({a.status.value}): no sat "
                         "top-1 instance can be made")
    y1 = a.logits[0]
    lead = float(y1.max() - np.sort(y1)[-2])
    delta = lead
    while time.perf_counter() - t0 < budget:
        delta *= 4
        left = min(budget - (time.perf_counter() - t0), budget / 8)
        if decide_agreement(pair.n1, pair.n2, inputs, delta, left).status is Status.HOLDS:
            return {"n_outputs": len(y1), "lead_witnessed": lead, "delta_proved": delta,
                    "witness": [float(v) for v in a.witness_x], "classes": list(a.classes),
                    "eps_seconds": round(time.perf_counter() - t0, 2)}
    raise InputError(f"{pair.n1.name} and {pair.n2.name}: top-1 agreement was not proved "
                     f"for any delta within --eps-budget {budget:g} s; give more time")


def _pair_record(k: int, pair: Pair, out: Path, eps_budget: float, files: FileForm) -> dict:
    """Bracket the pair's question (eps, or top-1's delta), copy its networks and write its
    merged network: the pair's record in ``benchmark.json``."""
    inputs = read_input_set(pair.region)
    fields = (_top1_fields if files.question == "top1" else _eps_fields)(pair, inputs,
                                                                         eps_budget)
    ext = ".onnx.gz" if files.gzip else ".onnx"
    names = [f"p{k}_n1_{_stem(pair.n1)}{ext}", f"p{k}_n2_{_stem(pair.n2)}{ext}"]
    for src, dst in zip((pair.n1, pair.n2), names, strict=True):
        for folder in (out / "onnx", out / "2.0" / "onnx"):
            if files.gzip or files.form != "gemm":
                save_model(network_to_model(load_network(src), form=files.form), folder / dst,
                           force=True)
            else:
                shutil.copyfile(src, folder / dst)
    merged = f"p{k}_merged{ext}"
    save_model(merge_files(pair.n1, pair.n2, outputs="all"), out / "onnx" / merged, force=True)
    same = same_architecture(load_network(pair.n1), load_network(pair.n2))
    in_shape, out_shape = _onnx_shapes(out / "onnx" / names[0])
    return {"pair": k, "n1": names[0], "n2": names[1], "merged": merged,
            "source": [pair.n1.name, pair.n2.name, pair.region.name],
            "region": pair.region.name, "lower": [b.lower.tolist() for b in inputs.boxes],
            "upper": [b.upper.tolist() for b in inputs.boxes],
            "input_shape": in_shape, "output_shape": out_shape,
            "relation": "isomorphic-to" if same else None, "question": files.question,
            **fields}


def _pair_key(pair: Pair, eps_budget: float, files: FileForm) -> str:
    return json.dumps([str(pair.n1), str(pair.n2), str(pair.region), eps_budget,
                       [files.gzip, files.form, files.question]])


def _prepare(out: Path, force: bool) -> bool:
    """Make the folder ready; True if it resumes an unfinished run (the pairs it holds are
    kept), which needs no ``force``."""
    resuming = resumable(out)
    if out.exists() and any(out.iterdir()) and not force and not resuming:
        raise OverwriteError(f"{out}: exists and is not empty; pass --force to overwrite or "
                             "choose another --out")
    if not resuming:
        for sub in ("onnx", "vnnlib", "2.0"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / PARTIAL).unlink(missing_ok=True)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "2.0" / "onnx").mkdir(parents=True, exist_ok=True)
    return resuming


def _kept(out: Path, keys: list[str]) -> dict[int, dict]:
    """The records of an unfinished run whose pair, budget and file form are unchanged."""
    done = {}
    for line in (out / PARTIAL).read_text().splitlines() if (out / PARTIAL).is_file() else []:
        rec = json.loads(line)
        k = rec["record"]["pair"]
        if k < len(keys) and rec["key"] == keys[k]:
            done[k] = rec["record"]
    return done


def _records(pairs: list[Pair], out: Path, eps_budget: float, files: FileForm,
             executor: Executor | None, say: Callable[[str], None]) -> list[dict]:
    """Every pair's record, computed on ``executor`` (in this process when None); each is
    appended to the folder's partial file as it lands, so a rerun resumes."""
    keys = [_pair_key(p, eps_budget, files) for p in pairs]
    done, failed = _kept(out, keys), []
    if done:
        say(f"resuming: {len(done)} of {len(pairs)} pairs already done")
    units = [Unit(str(k), _pair_record, (k, p, out, eps_budget, files))
             for k, p in enumerate(pairs) if k not in done]

    def landed(o: Outcome) -> None:
        k = int(o.key)
        if o.status != OK:
            failed.append((k, o.message))
            return
        done[k] = o.value
        with (out / PARTIAL).open("a") as f:
            f.write(json.dumps({"key": keys[k], "record": o.value}) + "\n")
        w, c = o.value.get("witnessed"), o.value.get("certified")
        bracket = f"eps in [{w:.4g}, {c:.4g}]" if w is not None else "top-1 delta bracketed"
        say(f"[{len(done)}/{len(pairs)}] {pairs[k].n1.name} vs {pairs[k].n2.name} over "
            f"{pairs[k].region.name}: {bracket}")
    if executor is None:
        run_here(units, landed)
    else:
        executor.run(units, landed, initializer=one_torch_thread)
    if failed:
        k, why = min(failed)
        raise InputError(f"pair {k + 1} ({pairs[k].n1.name} vs {pairs[k].n2.name} over "
                         f"{pairs[k].region.name}): {why.split(': ', 1)[-1]} ({len(done)} "
                         "other pairs are kept: rerun to resume)")
    return [done[k] for k in range(len(pairs))]


@dataclass(frozen=True)
class Running:
    """Where the pairs are bracketed (``executor``; None: in this process, one after another)
    and who hears of each one (``progress``)."""

    executor: Executor | None = None
    progress: Callable[[str], None] | None = None


def write_benchmark(pairs: list[Pair], out: str | Path, *, seed: int = 0, timeout: float = 60.0,
                    eps_budget: float = 30.0, force: bool = False,
                    files: FileForm = FileForm(), running: Running = Running()) -> Path:
    """Bracket eps for every pair and write the benchmark folder (see the module docstring);
    ``files``: gzip'd files and the networks' ONNX form. A run stopped halfway resumes from
    the pairs it finished."""
    say = running.progress or (lambda _m: None)
    out = Path(out)
    _prepare(out, force)
    records = _records(pairs, out, eps_budget, files, running.executor, say)
    info = {"name": files.name, "timeout": timeout, "eps_budget": eps_budget, "seed": seed,
            "gzip": files.gzip, "onnx_form": files.form, "question": files.question,
            "pairs": records}
    (out / "benchmark.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / PARTIAL).unlink(missing_ok=True)
    script = out / "generate_properties.py"
    script.write_bytes(Path(generator.__file__).read_bytes())
    script.chmod(0o755)
    regenerate(out, seed)
    return out


def regenerate(folder: str | Path, seed: int) -> None:
    """Write the properties, ``instances.csv``, ``expected.csv`` (both versions) and README
    of a benchmark folder from its ``benchmark.json`` and ``seed`` (what the folder's own
    ``generate_properties.py SEED`` does, with the same code)."""
    folder = Path(folder)
    if not (folder / "benchmark.json").is_file():
        raise InputError(f"{folder}: has no benchmark.json; run nnbisim vnncomp benchmark first")
    generator.regenerate(folder, seed)


def _index(net: str) -> int:
    """``1_1`` -> 11, ..., ``5_9`` -> 59: a seed offset per ACAS Xu network."""
    return int(net.replace("_", ""))


TAGS = {"float16": "float16", "prune": "pruned10", "int8": "int8", "int8-channel": "int8ch",
        "perturb": "perturbed"}


def acasxu_pairs(data: str | Path, work: str | Path, networks: list[str],
                 properties: list[int], compression: str, seed: int = 0) -> list[Pair]:
    """Pairs (ACAS Xu network, compressed copy, property region) from the ACAS Xu folder
    ``data`` (``ACASXU_run2a_I_J_batch_2000.onnx``, ``prop_K.vnnlib``); the copies are written
    to ``work`` (:func:`~nnbisim.adapters.compress.compress`): ``float16`` rounds every weight,
    ``prune`` zeroes the 10% of hidden neurons of smallest magnitude (same layer sizes),
    ``distill`` trains a 5-10-10-5 network on the original's outputs over the property's region
    (50,000 samples, seeded), ``int8``/``int8-channel`` quantize the weights, ``perturb`` adds
    N(0, 0.001^2) to every weight and bias (seeded per network, as VNN-COMP 2026's
    isomorphic_acasxu_2026)."""
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
            boxes = read_input_set(region).boxes
            tag = TAGS.get(compression, f"distilled_p{prop}")
            dst = work / f"ACASXU_run2a_{net}_{tag}.onnx"
            if not dst.exists():
                if compression == "perturb":  # its own noise per network, reproducible
                    opts = replace(opts, distill=replace(opts.distill, seed=seed + _index(net)))
                copy = compress(original, compression, np.array([b.lower for b in boxes]),
                                np.array([b.upper for b in boxes]), opts)
                save_model(network_to_model(copy), dst, force=True)
            pairs.append(Pair(src, dst, region))
    return pairs
