"""``nnbisim assure`` and ``nnbisim enlarge``: the handlers (assured compression)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nnbisim.adapters.compress import compress
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import CompressOptions, DistillOptions
from nnbisim.cli.common import budget_left, progress_to_stderr, verdict_exit, write_json
from nnbisim.cli.compress import hidden_sizes
from nnbisim.cli.device import resolve_device
from nnbisim.core.errors import InputError
from nnbisim.core.reports import AssureReport
from nnbisim.specs.assurance import enlarge
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.sets import InputSet, Property, SpecCase
from nnbisim.specs.vnnlib1 import write_cases_vnnlib1
from nnbisim.specs.vnnlib2 import write_vnnlib2
from nnbisim.tasks.assure import assure
from nnbisim.tasks.enlarge import EnlargedCase, enlarged_cases
from nnbisim.tasks.options import AssureOptions

DEFAULT_COMPRESSION = "distill"  # the first paper's compression (2x10 by default)
DISTILL_SHARE = 0.25  # of assure's time budget, at most, for distilling N2


def _compressed(args: argparse.Namespace, cases: list[SpecCase], folder: Path) -> Path:
    """N2 made by ``--compress`` from N1, saved in ``--workdir`` (kept) or ``folder``; a
    distillation gets at most :data:`DISTILL_SHARE` of the time budget."""
    method = args.compress or DEFAULT_COMPRESSION
    limit = DISTILL_SHARE * budget_left(args, args.time_budget)
    opts = CompressOptions(args.fraction, args.remove,
                           DistillOptions(hidden_sizes(args.hidden), seed=args.seed,
                                          time_limit=limit), sigma=args.sigma)
    t0 = time.perf_counter()
    n2 = compress(load_network(args.n1), method, np.array([c.box.lower for c in cases]),
                  np.array([c.box.upper for c in cases]), opts)
    if method == "distill" and time.perf_counter() - t0 >= limit:
        print(f"note: the distillation stopped at its share of the time budget ({limit:.1f} s), "
              "before its last training step: N2 depends on this machine's speed (--compressed "
              "N2.onnx, made once with nnbisim compress, does not)", file=sys.stderr)
    # kept only where asked (--workdir): a scratch file otherwise, so that a rerun neither
    # fails on it nor leaves files in the working directory
    out = args.workdir or folder
    out.mkdir(parents=True, exist_ok=True)
    path = save_model(network_to_model(n2), out / f"{args.n1.stem}_{method}.onnx",
                      force=args.force)
    kept = str(path) if args.workdir else "not kept; --workdir DIR keeps it"
    print(f"compressed network: {n2.describe()} ({kept})", file=sys.stderr)
    return path


def _print_assure(args: argparse.Namespace, rep: AssureReport, data: dict) -> None:
    print(f"{args.property.name} on {args.n1.name}: {rep.verdict.value.upper()} (route "
          f"{rep.route}, {data['total_seconds']:.1f} s in all, {data['setup_seconds']:.1f} s "
          f"of them loading and making N2; eps {data['eps_seconds']:.1f} s, N2 "
          f"{data['n2_seconds']:.1f} s, N1 directly {data['direct_seconds']:.1f} s; "
          f"{rep.boxes} boxes bounded)")
    for p in rep.pieces:
        seen = "" if np.isnan(p.eps_witnessed) else f", {p.eps_witnessed:.4g} seen"
        # the refined route's pieces each certify their own eps: this one is the whole box's
        print(f"  box {p.case} depth {p.depth}: {p.route:>10} {p.result:>8}  eps over the box "
              f"{p.eps:.4g} certified{seen}")
    if rep.counterexample is not None:
        print("counterexample (replayed on N1): [" + ", ".join(f"{v:.6g}" for v in
                                                              rep.counterexample) + "]")


def cmd_assure(args: argparse.Namespace) -> int:
    """Exit 0 holds, 1 violated, 3 timeout; the budget covers the whole run (the
    distillation of N2 included)."""
    cases = read_spec_cases(args.property)
    with tempfile.TemporaryDirectory(prefix="nnbisim-assure-") as scratch:
        n2_path = args.compressed or _compressed(args, cases, Path(scratch))
        made = time.perf_counter()
        opts = AssureOptions(time_budget=max(budget_left(args, args.time_budget), 0.0),
                             quick_direct=args.quick_direct,
                             compressed_share=args.compressed_share, verifier=args.verifier,
                             refine=args.refine, device=resolve_device(args.device),
                             max_boxes=args.max_boxes, workers=args.workers or 1,
                             ray=args.ray)
        rep = assure(args.n1, cases, n2_path, opts,
                     progress=progress_to_stderr(time.perf_counter(), args.quiet))
    data = rep.to_json()
    data["total_seconds"] = round(args.time_budget - budget_left(args, args.time_budget), 3)
    data["setup_seconds"] = round(data["total_seconds"] - (time.perf_counter() - made), 3)
    if args.compressed is None and args.workdir is None:
        data["n2"] = None  # a scratch file, gone
    _print_assure(args, rep, data)
    if args.json is not None:
        write_json(args.json, data)
    return verdict_exit(rep.verdict)


def _shown(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _write_enlarged(args: argparse.Namespace, cases: list[SpecCase],
                    res: list[EnlargedCase]) -> None:
    note = (f"{args.property.name} of {args.n1.name} for {args.n2.name}: N2 never reaching "
            "these unsafe sets proves N1 safe (nnbisim enlarge)")
    if args.vnnlib_version == "1.0":
        write_cases_vnnlib1([r.case for r in res], args.out_file, comment=note)
    else:  # one unsafe set for all boxes: enlarged by the hull of the boxes' intervals
        unsafe = enlarge(cases[0].unsafe, np.min([r.lower for r in res], axis=0),
                         np.max([r.upper for r in res], axis=0))
        write_vnnlib2(Property(InputSet(tuple(c.box for c in cases)), unsafe,
                               unsafe.out_dim), path=args.out_file)


def _shared_unsafe(cases: list[SpecCase]) -> bool:
    first = cases[0].unsafe.disjuncts
    return all(len(c.unsafe.disjuncts) == len(first) and all(
        np.array_equal(p.mat, q.mat) and np.array_equal(p.rhs, q.rhs)
        for p, q in zip(c.unsafe.disjuncts, first, strict=True)) for c in cases)


def cmd_enlarge(args: argparse.Namespace) -> int:
    """The property of N1 as the enlarged property N2 must satisfy, in VNN-LIB 1.0 or 2.0."""
    cases = read_spec_cases(args.property)
    if args.vnnlib_version == "2.0" and not _shared_unsafe(cases):
        raise InputError(f"{args.property}: its boxes have different unsafe sets, which one "
                         "VNN-LIB 2.0 property cannot state; write --vnnlib-version 1.0")
    res = enlarged_cases(args.n1, args.n2, cases, args.time_budget,
                         device=resolve_device(args.device), max_boxes=args.max_boxes,
                         progress=progress_to_stderr(time.perf_counter(), args.quiet))
    _write_enlarged(args, cases, res)
    print(f"{args.out_file}: {args.property.name} enlarged for {args.n2.name} "
          f"(VNN-LIB {args.vnnlib_version})")
    for k, r in enumerate(res):
        sides = ", ".join(f"y{j} [{_shown(r.side(j, -1))}, {_shown(r.side(j, 1))}]"
                          for j in range(len(r.lower)) if (j, -1) in r.needed
                          or (j, 1) in r.needed)
        print(f"  box {k}: N1 - N2 in {sides} ({r.seconds:.1f} s, {r.boxes} boxes bounded; "
              "-: side not used)")
    if args.json is not None:
        write_json(args.json, {
            "property": str(args.property), "n1": str(args.n1), "n2": str(args.n2),
            "out": str(args.out_file), "vnnlib_version": args.vnnlib_version,
            "max_boxes": args.max_boxes,
            "boxes": [{"lower": r.case.box.lower.tolist(), "upper": r.case.box.upper.tolist(),
                       "diff_lower": [r.side(j, -1) for j in range(len(r.lower))],
                       "diff_upper": [r.side(j, 1) for j in range(len(r.upper))],
                       "seconds": round(r.seconds, 3), "boxes": r.boxes} for r in res]})
    return 0
