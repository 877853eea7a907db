"""``nnbisim vnncomp ...``: translate two-network queries, write benchmarks, run instances."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nnbisim.core.errors import InputError


def _default_acasxu() -> Path:
    """``../shared/data/acasxu`` beside the repository, where the project keeps it."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "acasxu"


def progress_to_stderr(start: float):
    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)
    return say


def cmd_translate(args: argparse.Namespace) -> int:
    from nnbisim.vnncomp.formats import translate

    tr = translate(args.network, args.query, args.out, base=args.base, force=args.force)
    print(f"{tr.merged}\n{tr.vnnlib1}\n{tr.vnnlib2}\n{tr.manifest}")
    return 0


def cmd_back(args: argparse.Namespace) -> int:
    from nnbisim.core.verdict import Status
    from nnbisim.verifiers.registry import parse_vnncomp_result
    from nnbisim.vnncomp.formats import back_translate, write_result

    status, x, note = parse_vnncomp_result(args.result.read_text(errors="replace"))
    if status is not Status.VIOLATED or x is None:
        raise InputError(f"{args.result}: is not a sat result with a counterexample "
                         f"({status.vnncomp}{'; ' + note if note else ''}); nothing to translate")
    if args.o.exists() and not args.force:
        raise InputError(f"{args.o}: already exists; pass --force to overwrite it")
    write_result(args.o, "sat", back_translate(args.manifest, x))
    print(args.o)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nnbisim.vnncomp.run import run_instance

    if not args.timeout > 0:
        raise InputError(f"timeout must be a positive number of seconds, got {args.timeout}")
    print(run_instance(args.network, args.vnnlib, args.result, args.timeout, base=args.base))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from nnbisim.vnncomp.benchmark import read_pairs, write_benchmark

    out = write_benchmark(read_pairs(args.pairs), args.out, seed=args.seed, timeout=args.timeout,
                          eps_budget=args.eps_budget, force=args.force,
                          progress=progress_to_stderr(time.perf_counter()))
    print(out)
    return 0


def cmd_acasxu(args: argparse.Namespace) -> int:
    from nnbisim.vnncomp.benchmark import acasxu_pairs, write_benchmark

    data = args.data or _default_acasxu()
    if not data.is_dir():
        raise InputError(f"{data}: no ACAS Xu folder here; give --data DIR")
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    try:
        props = [int(p) for p in args.properties.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--properties {args.properties!r}: give numbers like 1,2,3,4") from None
    work = Path(args.out).with_name(Path(args.out).name + "-networks")
    pairs = acasxu_pairs(data, work, networks, props, args.compression, seed=args.seed)
    out = write_benchmark(pairs, args.out, seed=args.seed, timeout=args.timeout,
                          eps_budget=args.eps_budget, force=args.force,
                          name=f"acasxu_{args.compression}_equivalence",
                          progress=progress_to_stderr(time.perf_counter()))
    print(out)
    return 0


def add_parser(sub) -> None:
    v = sub.add_parser("vnncomp", help="VNN-COMP: translate queries, benchmarks, run instances")
    vs = v.add_subparsers(dest="vnncomp_command", required=True, parser_class=type(v))

    t = vs.add_parser("translate", help="a two-network 2.0 query as one merged network and a "
                      "single-network property (1.0 and 2.0)")
    t.add_argument("network", metavar="NETWORK_FIELD",
                   help="the instance's network field, e.g. \"[('f', 'a.onnx'), ('g', 'b.onnx')]\"")
    t.add_argument("query", type=Path, metavar="QUERY.vnnlib")
    t.add_argument("--out", type=Path, required=True, metavar="DIR")
    t.add_argument("--base", type=Path, help="folder the field's paths are relative to "
                   "(default: the current one)")
    t.add_argument("--force", action="store_true")
    t.set_defaults(func=cmd_translate)

    b = vs.add_parser("back", help="a sat result of a translated instance as the 2.0 "
                      "assignment of the original query")
    b.add_argument("manifest", type=Path, metavar="DIR/translation.json")
    b.add_argument("result", type=Path, metavar="RESULT")
    b.add_argument("-o", type=Path, required=True, metavar="OUT")
    b.add_argument("--force", action="store_true")
    b.set_defaults(func=cmd_back)

    r = vs.add_parser("run", help="decide one instance and write its result file (what "
                      "run_instance.sh calls)")
    r.add_argument("network", metavar="NETWORK_FIELD")
    r.add_argument("vnnlib", type=Path, metavar="VNNLIB")
    r.add_argument("result", type=Path, metavar="RESULTFILE")
    r.add_argument("timeout", type=float, metavar="TIMEOUT")
    r.add_argument("--base", type=Path, help="folder the network field's paths are relative to")
    r.set_defaults(func=cmd_run)

    k = vs.add_parser("benchmark", help="an equivalence benchmark with known answers from "
                      "PAIRS.csv (n1.onnx,n2.onnx,region.vnnlib)")
    k.add_argument("pairs", type=Path, metavar="PAIRS.csv")
    a = vs.add_parser("acasxu", help="the ready generator: ACAS Xu networks against compressed "
                      "copies over the property regions")
    a.add_argument("--networks", default="1_1,2_2,3_3")
    a.add_argument("--properties", default="1,2,3,4")
    a.add_argument("--compression", default="float16", choices=["float16", "prune", "distill"])
    a.add_argument("--data", type=Path, help="the ACAS Xu folder (default ../shared/data/acasxu "
                   "beside the repository)")
    for p in (k, a):
        p.add_argument("--out", type=Path, required=True, metavar="DIR")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--timeout", type=float, default=60.0, help="per instance (s)")
        p.add_argument("--eps-budget", type=float, default=30.0,
                       help="time to bracket eps per pair (s)")
        p.add_argument("--force", action="store_true")
    k.set_defaults(func=cmd_benchmark)
    a.set_defaults(func=cmd_acasxu)

