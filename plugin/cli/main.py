"""The ``nnbisim`` command line. Library errors become one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnbisim.core.errors import InputError, NnbisimError

EXIT_BAD_INPUT = 2
THREADS_ENV = "NNBISIM_THREADS"  # CPU threads for torch when --threads is not given (default 1)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _vector(text: str, what: str) -> np.ndarray:
    from nnbisim.specs.regions import parse_vector

    return parse_vector(text, what)


def _add_region_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("input set (one of)")
    g.add_argument("--input", type=Path, metavar="P.vnnlib",
                   help="take the input set from a VNN-LIB file (1.0 or 2.0)")
    g.add_argument("--lower", metavar="L", help="comma-separated lower bounds")
    g.add_argument("--upper", metavar="U", help="comma-separated upper bounds")
    g.add_argument("--center", metavar="C", help="comma-separated centre of an L-inf ball")
    g.add_argument("--radius", metavar="R", help="radius of the ball (one value or one per input)")
    g.add_argument("--domain-lower", metavar="L", help="clip the ball to this lower bound")
    g.add_argument("--domain-upper", metavar="U", help="clip the ball to this upper bound")
    p.set_defaults(region_required=required)


def _region(args: argparse.Namespace):
    """The input set the region arguments describe, or None when none was given."""
    from nnbisim.specs.io import read_spec
    from nnbisim.specs.sets import Box, InputSet

    given = [args.input is not None, args.lower is not None or args.upper is not None,
             args.center is not None or args.radius is not None]
    if sum(given) > 1:
        raise InputError("give one input set: --input, or --lower/--upper, or --center/--radius")
    if args.input is not None:
        return read_spec(args.input).inputs
    if given[1]:
        if args.lower is None or args.upper is None:
            raise InputError("--lower and --upper go together; give both")
        return InputSet.of(Box(_vector(args.lower, "--lower"), _vector(args.upper, "--upper")))
    if given[2]:
        if args.center is None or args.radius is None:
            raise InputError("--center and --radius go together; give both")
        center = _vector(args.center, "--center")
        radius = _vector(args.radius, "--radius")
        domain = None
        if args.domain_lower is not None or args.domain_upper is not None:
            if args.domain_lower is None or args.domain_upper is None:
                raise InputError("--domain-lower and --domain-upper go together; give both")
            domain = Box(_vector(args.domain_lower, "--domain-lower"),
                         _vector(args.domain_upper, "--domain-upper"))
        if radius.size not in (1, center.size):
            raise InputError(f"--radius has {radius.size} values but --center has {center.size}; "
                             "give one radius or one per input")
        return InputSet.of(Box.from_center(center, radius if radius.size > 1 else radius[0],
                                           domain))
    if args.region_required:
        raise InputError("no input set: give --input P.vnnlib, --lower/--upper or "
                         "--center/--radius")
    return None


def cmd_merge(args: argparse.Namespace) -> int:
    from nnbisim.adapters.onnx_write import save_model
    from nnbisim.api import merge_files

    model = merge_files(args.n1, args.n2, form=args.form, outputs=args.outputs,
                        separate_comparison=args.separate_comparison)
    out = save_model(model, args.o, force=args.force)
    print(f"wrote {out} ({args.form} form, outputs: {args.outputs})")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    from nnbisim.tasks.spec_files import SpecRequest, write_spec_files

    inputs = _region(args)
    written = write_spec_files(SpecRequest(
        inputs=inputs, eps=args.eps, out=args.o, index=args.output, sign=args.sign,
        version=args.vnnlib_version, model=args.model,
        n_outputs=args.n_outputs, source=args.input, force=args.force,
        pair=tuple(args.pair) if args.pair else None))
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nnbisim.adapters.onnx_load import read_model, real_inputs, value_shape
    from nnbisim.api import check_merged

    inputs = _region(args)
    if inputs is None:
        dim = int(np.prod(value_shape(real_inputs(read_model(args.n1))[0])))
        lower, upper = -np.ones(dim), np.ones(dim)
    else:
        hull = inputs.hull()
        lower, upper = hull.lower, hull.upper
    rep = check_merged(args.merged, args.n1, args.n2, lower, upper, args.samples, args.seed)
    ok = rep.passed(args.rel_tol)
    print(f"samples: {rep.samples}  largest disagreement |M(x) - (N1(x) - N2(x))|: "
          f"{rep.max_abs:.3g} (relative {rep.max_rel:.3g})  largest |N1 - N2| seen: "
          f"{rep.max_abs_diff:.6g}  -> {'OK' if ok else 'MISMATCH'}")
    if args.json:
        args.json.write_text(json.dumps({
            "samples": rep.samples, "max_abs": rep.max_abs, "max_rel": rep.max_rel,
            "max_abs_diff": rep.max_abs_diff, "worst_input": rep.worst_input.tolist(),
            "ok": ok}, indent=2))
    return 0 if ok else 1


def format_epsilon(rep) -> str:
    """The eps report as a readable table."""
    lines = [f"{'output':>6} {'min witnessed':>14} {'min certified':>14} "
             f"{'max witnessed':>14} {'max certified':>14}"]
    for o in rep.outputs:
        lines.append(f"{o.index:>6} {o.min_witnessed:>14.6g} {o.min_certified:>14.6g} "
                     f"{o.max_witnessed:>14.6g} {o.max_certified:>14.6g}")
    ratio = rep.certified / rep.witnessed if rep.witnessed > 0 else float("inf")
    lines += ["", f"eps = max |N1 - N2|_inf in [{rep.witnessed:.6g}, {rep.certified:.6g}]"
              f"  (witnessed, certified; ratio {ratio:.3g}; engine {rep.engine}, verifier "
              f"{rep.verifier}, {rep.seconds:.1f} s)",
              "witness x = [" + ", ".join(f"{v:.6g}" for v in rep.witness_x[:8])
              + (f", ... ({rep.witness_x.size} values, all in the JSON)]"
                 if rep.witness_x.size > 8 else "]")
              + f"  (output {rep.witness_output[0]}, sign {rep.witness_output[1]:+d})"]
    if rep.queries:
        lines += ["", f"{'query':>5} {'output':>6} {'sign':>4} {'box':>3} {'threshold':>12} "
                  f"{'answer':>8} {'seconds':>8}"]
        for k, q in enumerate(rep.queries):
            lines.append(f"{k:>5} {q['index']:>6} {q['sign']:>+4d} {q['box']:>3} "
                         f"{q['threshold']:>12.6g} {q['status']:>8} {q['seconds']:>8.2f}")
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: torch sees no CUDA GPU here; use --device cpu")
    return name


def cmd_epsilon(args: argparse.Namespace) -> int:
    from nnbisim.tasks.epsilon import compute_epsilon

    inputs = _region(args)
    if args.json is not None and args.json.exists() and not args.force:
        raise InputError(f"{args.json}: already exists; pass --force to overwrite it")
    if args.time_budget <= 0 or not 0 <= args.rel_gap < 1:
        raise InputError("--time-budget must be > 0 and --rel-gap in [0, 1)")

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    rep = compute_epsilon(args.n1, args.n2, inputs, verifier=args.verifier, engine=args.engine,
                          aim=args.aim, rel_gap=args.rel_gap, time_budget=args.time_budget,
                          device=_device(args.device),
                          query_timeout=args.query_timeout, workdir=args.workdir,
                          progress=None if args.quiet else progress)
    print(format_epsilon(rep))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep.to_json(), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from nnbisim.tasks.demo import run_demo

    return run_demo(args.out, force=args.force, echo=print)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nnbisim", description="Certified distance between an original and a "
                "compressed ReLU network: merge, VNN-LIB, verify.")
    from nnbisim import __version__

    p.add_argument("--version", action="version", version=f"nnbisim {__version__}")
    p.add_argument("--threads", metavar="N", default=None,
                   help=f"CPU threads of the bound engines (torch), given before the command "
                   f"(default: ${THREADS_ENV}, else 1: on these small batched matrices one "
                   "thread is as fast, and spare threads spin-wait when another process holds "
                   "a core)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    m = sub.add_parser("merge", help="merge N1 and N2 into one ONNX whose output is N1 - N2")
    m.add_argument("n1", type=Path, metavar="N1.onnx")
    m.add_argument("n2", type=Path, metavar="N2.onnx")
    m.add_argument("-o", type=Path, required=True, metavar="M.onnx")
    m.add_argument("--form", choices=["sequential", "graph"], default="sequential",
                   help="sequential: a Gemm/Relu chain any verifier takes (default); graph: both "
                   "graphs side by side, any operators")
    m.add_argument("--outputs", choices=["diff", "all"], default="diff",
                   help="diff: y1 - y2 (default); all: [y1, y2, y1 - y2]")
    m.add_argument("--separate-comparison", action="store_true",
                   help="write the comparison [I, -I] as its own layer (sequential form)")
    m.add_argument("--force", action="store_true", help="overwrite the output file")
    m.set_defaults(func=cmd_merge)

    s = sub.add_parser("spec", help="write VNN-LIB discrepancy properties")
    _add_region_args(s, required=True)
    s.add_argument("--eps", type=float, required=True, help="the threshold to ask about")
    s.add_argument("--output", type=int, metavar="I", help="one output index (with --sign)")
    s.add_argument("--sign", choices=["+", "-"], default="+",
                   help="+: ask y1_i - y2_i >= eps; -: ask y2_i - y1_i >= eps")
    s.add_argument("--vnnlib-version", choices=["1.0", "2.0"], default="1.0")
    s.add_argument("--model", type=Path, metavar="M.onnx",
                   help="the merged network (gives the output count, layout and shapes)")
    s.add_argument("--pair", type=Path, nargs=2, metavar=("N1.onnx", "N2.onnx"),
                   help="write the native two-network VNN-LIB 2.0 query on the original pair")
    s.add_argument("--n-outputs", type=int, metavar="K", help="number of outputs of N1")
    s.add_argument("-o", type=Path, required=True, metavar="OUT",
                   help="file (with --output) or directory (one file per output and sign)")
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    s.set_defaults(func=cmd_spec)

    c = sub.add_parser("check", help="replay random inputs through M, N1, N2 with onnxruntime")
    c.add_argument("merged", type=Path, metavar="M.onnx")
    c.add_argument("n1", type=Path, metavar="N1.onnx")
    c.add_argument("n2", type=Path, metavar="N2.onnx")
    _add_region_args(c, required=False)
    c.add_argument("--samples", type=int, default=5000)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--rel-tol", type=float, default=1e-5)
    c.add_argument("--json", type=Path, metavar="OUT.json")
    c.set_defaults(func=cmd_check)

    e = sub.add_parser("epsilon", help="witnessed and certified eps = max |N1 - N2| over X")
    e.add_argument("n1", type=Path, metavar="N1.onnx")
    e.add_argument("n2", type=Path, metavar="N2.onnx")
    _add_region_args(e, required=True)
    e.add_argument("--verifier", default="marabou",
                   help="marabou (default: bounds, then Marabou bisection), bounds (own engine "
                   "only), none (witnesses only), vnncomp:DIR, or a registered plug-in")
    e.add_argument("--engine", default="auto",
                   choices=["auto", "differential", "crown", "separate", "interval"],
                   help="bound engine (auto: differential when the layer sizes agree, else "
                   "crown on the merged network; separate bounds each network on its own)")
    e.add_argument("--device", default="auto",
                   help="where the bound engines run: auto (a CUDA GPU when torch sees one, "
                   "else cpu), cpu, cuda, cuda:1, ...")
    e.add_argument("--aim", default="eps", choices=["eps", "outputs"],
                   help="eps: close the gap of eps itself (default); outputs: of every "
                   "output's min and max on its own (slower)")
    e.add_argument("--rel-gap", type=float, default=0.01,
                   help="stop when certified is within this relative gap of witnessed")
    e.add_argument("--time-budget", type=float, default=60.0, metavar="S")
    e.add_argument("--query-timeout", type=float, default=60.0, metavar="S",
                   help="time limit of one exact-verifier query")
    e.add_argument("--workdir", type=Path, help="keep the merged ONNX and queries here")
    e.add_argument("--json", type=Path, metavar="OUT.json")
    e.add_argument("--force", action="store_true", help="overwrite the JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    e.set_defaults(func=cmd_epsilon)

    from nnbisim.cli.assure import add_assure_parser
    from nnbisim.cli.quant import add_quant_parsers
    from nnbisim.cli.vnncomp import add_parser as add_vnncomp

    add_vnncomp(sub)
    add_assure_parser(sub)
    add_quant_parsers(sub)

    d = sub.add_parser("demo", help="the built-in example, end to end")
    d.add_argument("--out", type=Path, default=Path("nnbisim-demo"))
    d.add_argument("--force", action="store_true")
    d.set_defaults(func=cmd_demo)
    return p


VECTOR_OPTIONS = ("--lower", "--upper", "--center", "--radius", "--domain-lower",
                  "--domain-upper")


def _glue_vectors(argv: Sequence[str]) -> list[str]:
    """``--lower -0.1,-0.1`` -> ``--lower=-0.1,-0.1``, which argparse would read as an option."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok in VECTOR_OPTIONS:
            value = next(it, None)
            out.append(tok if value is None else f"{tok}={value}")
        else:
            out.append(tok)
    return out


def set_threads(value: str | None) -> int:
    """Set torch's intra-op threads from ``--threads`` (or ``$NNBISIM_THREADS``, else 1)."""
    import os

    import torch

    source = "--threads" if value is not None else f"${THREADS_ENV}"
    value = value if value is not None else os.environ.get(THREADS_ENV, "1")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{source} {value!r}: give a whole number of threads, at least 1")
    torch.set_num_threads(n)
    return n


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_glue_vectors(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:  # --help, --version, or a usage error already reported
        return stop.code if isinstance(stop.code, int) else 0
    try:
        set_threads(args.threads)
        return int(args.func(args) or 0)
    except NnbisimError as exc:
        print(f"nnbisim: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nnbisim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
