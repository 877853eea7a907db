"""``nnbisim assure``: a property of N1 decided through a compressed N2."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from nnbisim.cli.vnncomp import progress_to_stderr
from nnbisim.core.errors import InputError
from nnbisim.tasks.assure import COMPRESSED_SHARE, QUICK_DIRECT, REFINES


def cmd_assure(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from nnbisim.adapters.compress import distill, prune_neurons, quantize_weights, round_weights
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.adapters.onnx_write import network_to_model, save_model
    from nnbisim.specs.io import read_spec_cases
    from nnbisim.tasks.assure import assure

    if args.compressed is not None and args.compress is not None:
        raise InputError("give one of --compressed N2.onnx or --compress METHOD, not both")
    if args.compressed is None and args.compress is None:
        args.compress = "distill"  # the first paper's compression (2x10 by default)
    if args.json is not None and args.json.exists() and not args.force:
        raise InputError(f"{args.json}: already exists; pass --force to overwrite it")
    cases = read_spec_cases(args.property)
    if not 0 <= args.quick_direct < 1:
        raise InputError("--quick-direct must be in [0, 1)")
    if not 0 <= args.compressed_share <= 1:
        raise InputError("--compressed-share must be in [0, 1]")
    with tempfile.TemporaryDirectory(prefix="nnbisim-assure-") as scratch:
        n2_path = args.compressed
        if n2_path is None:
            n1 = load_network(args.n1)
            if args.compress == "distill":
                hidden = tuple(int(h) for h in args.hidden.split(","))
                n2 = distill(n1, np.array([c.box.lower for c in cases]),
                             np.array([c.box.upper for c in cases]), hidden, seed=args.seed)
            elif args.compress == "prune":
                n2 = prune_neurons(n1, args.fraction, remove=args.remove)
            elif args.compress == "float16":
                n2 = round_weights(n1)
            else:
                n2 = quantize_weights(n1, 8, per_channel=args.compress == "int8-channel")
            # kept only where asked (--workdir): a scratch file otherwise, so that a rerun
            # neither fails on it nor leaves files in the working directory
            out = args.workdir or Path(scratch)
            out.mkdir(parents=True, exist_ok=True)
            n2_path = save_model(network_to_model(n2),
                                 out / f"{args.n1.stem}_{args.compress}.onnx", force=args.force)
            kept = str(n2_path) if args.workdir else "not kept; --workdir DIR keeps it"
            print(f"compressed network: {n2.describe()} ({kept})", file=sys.stderr)
        rep = assure(args.n1, cases, n2_path, time_budget=args.time_budget,
                     quick_direct=args.quick_direct, compressed_share=args.compressed_share,
                     verifier=args.verifier, refine=args.refine,
                     progress=None if args.quiet else progress_to_stderr(time.perf_counter()))
    data = rep.to_json()
    if args.compressed is None and args.workdir is None:
        data["n2"] = None  # a scratch file, gone
    print(f"{args.property.name} on {args.n1.name}: {rep.verdict.upper()} (route {rep.route}, "
          f"{rep.seconds:.1f} s; eps {data['eps_seconds']:.1f} s, N2 {data['n2_seconds']:.1f} s, "
          f"N1 directly {data['direct_seconds']:.1f} s)")
    for p in rep.pieces:
        seen = "" if np.isnan(p.eps_witnessed) else f", {p.eps_witnessed:.4g} seen"
        # the refined route's pieces each certify their own eps: this one is the whole box's
        print(f"  box {p.case} depth {p.depth}: {p.route:>10} {p.result:>8}  eps over the box "
              f"{p.eps:.4g} certified{seen}")
    if rep.counterexample is not None:
        print("counterexample (replayed on N1): [" + ", ".join(f"{v:.6g}" for v in
                                                              rep.counterexample) + "]")
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


def _shown(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def cmd_enlarge(args: argparse.Namespace) -> int:
    """The property of N1 as the enlarged property N2 must satisfy, in VNN-LIB 1.0 or 2.0."""
    import json

    import numpy as np

    from nnbisim.specs.assurance import enlarge
    from nnbisim.specs.io import read_spec_cases
    from nnbisim.specs.sets import InputSet, Property
    from nnbisim.specs.vnnlib1 import write_cases_vnnlib1
    from nnbisim.specs.vnnlib2 import write_vnnlib2
    from nnbisim.tasks.assure import enlarged_cases

    for path in (args.o, args.json):
        if path is not None and path.exists() and not args.force:
            raise InputError(f"{path}: already exists; pass --force to overwrite it")
    cases = read_spec_cases(args.property)
    first = cases[0].unsafe.disjuncts
    shared = all(len(c.unsafe.disjuncts) == len(first) and all(
        np.array_equal(p.mat, q.mat) and np.array_equal(p.rhs, q.rhs)
        for p, q in zip(c.unsafe.disjuncts, first, strict=True)) for c in cases)
    if args.vnnlib_version == "2" and not shared:
        raise InputError(f"{args.property}: its boxes have different unsafe sets, which one "
                         "VNN-LIB 2.0 property cannot state; write --vnnlib-version 1")
    res = enlarged_cases(args.n1, args.n2, cases, time_budget=args.time_budget,
                         progress=None if args.quiet else progress_to_stderr(time.perf_counter()))
    note = (f"{args.property.name} of {args.n1.name} for {args.n2.name}: N2 never reaching "
            "these unsafe sets proves N1 safe (nnbisim enlarge)")
    if args.vnnlib_version == "1":
        write_cases_vnnlib1([r.case for r in res], args.o, comment=note)
    else:  # one unsafe set for all boxes: enlarged by the hull of the boxes' intervals
        unsafe = enlarge(cases[0].unsafe, np.min([r.lower for r in res], axis=0),
                         np.max([r.upper for r in res], axis=0))
        write_vnnlib2(Property(InputSet(tuple(c.box for c in cases)), unsafe,
                               unsafe.out_dim), path=args.o)
    print(f"{args.o}: {args.property.name} enlarged for {args.n2.name} "
          f"(VNN-LIB {args.vnnlib_version}.0)")
    for k, r in enumerate(res):
        sides = ", ".join(f"y{j} [{_shown(r.side(j, -1))}, {_shown(r.side(j, 1))}]"
                          for j in range(len(r.lower)) if (j, -1) in r.needed
                          or (j, 1) in r.needed)
        print(f"  box {k}: N1 - N2 in {sides} ({r.seconds:.1f} s; -: side not used)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "property": str(args.property), "n1": str(args.n1), "n2": str(args.n2),
            "out": str(args.o), "vnnlib_version": args.vnnlib_version,
            "boxes": [{"lower": r.case.box.lower.tolist(), "upper": r.case.box.upper.tolist(),
                       "diff_lower": [r.side(j, -1) for j in range(len(r.lower))],
                       "diff_upper": [r.side(j, 1) for j in range(len(r.upper))],
                       "seconds": round(r.seconds, 3)} for r in res]}, indent=2))
    return 0


def add_assure_parser(sub) -> None:
    a = sub.add_parser("assure", help="decide a property of N1 through a compressed N2 and the "
                       "certified bound on N1 - N2")
    a.add_argument("n1", type=Path, metavar="N1.onnx")
    a.add_argument("property", type=Path, metavar="PROPERTY.vnnlib")
    a.add_argument("--compressed", type=Path, metavar="N2.onnx")
    a.add_argument("--compress", choices=["distill", "prune", "float16", "int8",
                                          "int8-channel"],
                   help="how to make N2 when --compressed is not given (default: distill)")
    a.add_argument("--hidden", default="10,10", help="distill: hidden layer sizes")
    a.add_argument("--fraction", type=float, default=0.1, help="prune: fraction of neurons")
    a.add_argument("--remove", action="store_true", help="prune: make the network smaller "
                   "(default: zero the neurons, same layer sizes)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--time-budget", type=float, default=116.0, metavar="S")
    a.add_argument("--quick-direct", type=float, default=QUICK_DIRECT, metavar="SHARE",
                   help="share of the budget for a first look at N1 itself (0: only a witness "
                   "search; proofs then come through N2)")
    a.add_argument("--compressed-share", type=float, default=COMPRESSED_SHARE,
                   metavar="SHARE",
                   help="share of the rest of the budget for the route through N2; what it "
                   "leaves open is decided on N1 directly with the remainder (1: all of it)")
    a.add_argument("--refine", choices=list(REFINES), default="bab",
                   help="how the route through N2 refines a box: bab (default; one branch and "
                   "bound, each piece proved by its own certified eps and N2's bound; the own "
                   "engine only) or halves (split in two, eps and N2 per half, to depth 8; "
                   "what other verifiers use)")
    a.add_argument("--verifier", default="bounds",
                   help="decides the enlarged property on N2 and the boxes left to N1: bounds "
                   "(the own engine, default), marabou, vnncomp:DIR or a plug-in; one box and "
                   "unsafe polytope per query, counterexamples replayed")
    a.add_argument("--workdir", type=Path,
                   help="keep the network --compress makes in this folder (default: not kept)")
    a.add_argument("--json", type=Path, metavar="OUT.json")
    a.add_argument("--force", action="store_true")
    a.add_argument("--quiet", action="store_true")
    a.set_defaults(func=cmd_assure)
    e = sub.add_parser("enlarge", help="write a property of N1 as the enlarged property N2 "
                       "must satisfy (for any verifier on N2)")
    e.add_argument("n1", type=Path, metavar="N1.onnx")
    e.add_argument("n2", type=Path, metavar="N2.onnx")
    e.add_argument("property", type=Path, metavar="PROPERTY.vnnlib")
    e.add_argument("-o", type=Path, required=True, metavar="OUT.vnnlib")
    e.add_argument("--vnnlib-version", choices=["1", "2"], default="1",
                   help="1: per box its own enlarged set; 2: one set for all boxes (the hull "
                   "of their intervals), which needs one unsafe set in the source")
    e.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="for certifying N1 - N2, shared among the boxes")
    e.add_argument("--json", type=Path, metavar="OUT.json")
    e.add_argument("--force", action="store_true")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_enlarge)
