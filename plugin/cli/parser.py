"""The ``nnbisim`` parser: every command's arguments, with a line of help each and defaults
shown. Light to import, so ``--help`` and argument errors answer at once; each subcommand names
its handler (``module:function``, imported only when it runs) and its light checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnbisim import __version__
from nnbisim.bounds.engines import ENGINE_CHOICES
from nnbisim.cli.args import (
    VERSIONS,
    Parser,
    command,
    device,
    finish,
    force,
    max_boxes,
    networks,
    out_file,
    region,
    workers,
)
from nnbisim.cli.parser_tasks import add_assure, add_quant, add_vnncomp
from nnbisim.tasks.options import AIMS, EpsilonOptions

THREADS_ENV = "NNBISIM_THREADS"  # CPU threads for torch when --threads is not given (default 1)
EPS = EpsilonOptions()


def _merge(sub) -> None:
    m = command(sub, "merge", "merge N1 and N2 into one ONNX whose output is N1 - N2",
                 "merge:cmd_merge")
    networks(m)
    out_file(m, "the merged ONNX file to write")
    m.add_argument("--form", choices=["sequential", "graph"], default="sequential",
                   help="sequential: a Gemm/Relu chain any verifier takes; graph: both graphs "
                   "side by side, any operators")
    m.add_argument("--outputs", choices=["diff", "all"], default="diff",
                   help="diff: y1 - y2; all: [y1, y2, y1 - y2]")
    m.add_argument("--separate-comparison", action="store_true",
                   help="write the comparison [I, -I] as its own layer (sequential form)")
    force(m)


def _spec(sub) -> None:
    s = command(sub, "spec", "write VNN-LIB discrepancy properties |y1 - y2|_i >= eps",
                 "spec:cmd_spec")
    region(s, required=True)
    s.add_argument("--eps", type=float, help="the threshold to ask about (required unless "
                   "--agree)")
    s.add_argument("--agree", type=float, metavar="D", dest="agree_delta",
                   help="write top-1 disagreement instead (one file): N1 ranks c first by more "
                   "than D (0: at all), N2 ranks another class above c; with --pair (2.0) or a "
                   "--model merged with --outputs all")
    s.add_argument("--output", type=int, metavar="I",
                   help="one output index (with --sign); without it, a folder of every output "
                   "and sign plus the infinity-norm disjunction")
    s.add_argument("--sign", choices=["+", "-"], default="+",
                   help="+: ask y1_i - y2_i >= eps; -: ask y2_i - y1_i >= eps")
    s.add_argument("--vnnlib-version", choices=VERSIONS, default="1.0",
                   help="VNN-LIB 1.0 (VNN-COMP 2021-2025, Marabou) or 2.0 (VNN-COMP 2026)")
    s.add_argument("--model", type=Path, metavar="M.onnx",
                   help="the merged network (gives the output count, layout and shapes)")
    s.add_argument("--pair", type=Path, nargs=2, metavar=("N1.onnx", "N2.onnx"),
                   help="write the native two-network VNN-LIB 2.0 query on the original pair")
    s.add_argument("--n-outputs", type=int, metavar="K", help="number of outputs of N1")
    s.add_argument("-o", "--out", type=Path, required=True, metavar="OUT",
                   help="file (with --output) or folder (one file per output and sign)")
    force(s)


def _check(sub) -> None:
    c = command(sub, "check", "replay random inputs through M, N1 and N2 in onnxruntime",
                 "check:cmd_check")
    c.add_argument("merged", type=Path, metavar="M.onnx", help="the merged network")
    networks(c)
    region(c, required=False)
    c.add_argument("--samples", type=int, default=5000, help="random inputs to replay")
    c.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    c.add_argument("--rel-tol", type=float, default=1e-5,
                   help="largest disagreement allowed, relative to the outputs' magnitude")
    finish(c, quiet=False)


def _epsilon(sub) -> None:
    e = command(sub, "epsilon", "witnessed and certified eps = max |N1 - N2| over X",
                 "epsilon:cmd_epsilon")
    networks(e)
    region(e, required=True)
    e.add_argument("--verifier", default="marabou",
                   help="marabou (bounds, then Marabou bisection), bounds (own engine only), "
                   "none (witnesses only), vnncomp:DIR, or a registered plug-in")
    e.add_argument("--engine", default=EPS.engine, choices=ENGINE_CHOICES,
                   help="bound engine (auto: differential when the layer sizes agree, else "
                   "crown on the merged network; zonotope: differential zonotopes, cheaper "
                   "per box and looser on wide boxes; separate bounds each network on its own)")
    device(e)
    e.add_argument("--aim", default=EPS.aim, choices=AIMS,
                   help="eps: close the gap of eps itself; outputs: of every output's min and "
                   "max on its own (slower)")
    e.add_argument("--rel-gap", type=float, default=EPS.rel_gap,
                   help="stop when certified is within this relative gap of witnessed")
    e.add_argument("--time-budget", type=float, default=EPS.time_budget, metavar="S",
                   help="seconds for the whole computation")
    max_boxes(e, "in all (one search for all outputs and signs; wide inputs: one per output "
              "and sign, each given the rest divided by those left; an exact verifier's "
              "bisection stays timed)")
    e.add_argument("--query-timeout", type=float, default=EPS.query_timeout, metavar="S",
                   help="time limit of one exact-verifier query")
    e.add_argument("--seed", type=int, default=EPS.seed, help="seed of the witness search")
    e.add_argument("--workdir", type=Path, help="keep the merged ONNX and queries here")
    e.add_argument("--eps", type=float, metavar="E",
                   help="decide instead: is |N1 - N2|_i <= E everywhere in X? holds (exit 0), "
                   "violated with a replayed input (exit 1) or unknown (exit 3); the own "
                   "engine answers (--verifier, --aim and --rel-gap are not used)")
    e.add_argument("--outputs", dest="eps_outputs", metavar="I,J",
                   help="with --eps: only these outputs (0-based; default all)")
    workers(e, "the branch and bound (the bracket's, or --eps's decision) on N processes, "
            "open boxes handed out in slices (default 1: this process; a --max-boxes limit "
            "keeps it in one)")
    finish(e)


def _agree(sub) -> None:
    a = command(sub, "agree", "top-1 agreement: does N2 classify like N1 everywhere in X?",
                "agree:cmd_agree")
    networks(a, suffix="")
    region(a, required=True)
    a.add_argument("--delta", dest="top1_delta", type=float, default=0.0, metavar="D",
                   help="ask only where N1's top logit leads its runner-up by more than D "
                   "(delta-top-1); 0: everywhere")
    a.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="seconds for the decision; holds (exit 0), violated with an input "
                   "replayed in onnxruntime (exit 1), else unknown (exit 3)")
    max_boxes(a, "in all", what="input boxes")
    a.add_argument("--engine", dest="agree_engine", choices=("differential", "product"),
                   default="differential", help="differential: the pair's difference bounded "
                   "as such (close networks); product: CROWN on the merged network, as a "
                   "single-network verifier sees it")
    a.add_argument("--seed", type=int, default=0, help="seed of the witness search")
    finish(a)


def _demo(sub) -> None:
    d = command(sub, "demo", "the built-in example (the first paper's Example 1), end to end",
                "demo:cmd_demo")
    d.add_argument("-o", "--out", dest="out_dir", type=Path, default=Path("nnbisim-demo"),
                   help="folder for the files it writes")
    d.set_defaults(empty_out_dir=True)
    force(d)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="nnbisim", description="Certified distance between an original and a "
               "compressed ReLU network: merge, VNN-LIB, verify, assure, repair.",
               epilog="exit codes: 0 done (a verdict: holds, unsat), 1 violated (sat, with a "
               "replayed counterexample), 2 bad input (one line on stderr, before any work), 3 "
               "undecided (timeout, unknown), 130 interrupted (the first Ctrl-C stops at the next "
               "consistent state and writes what was computed; a second one stops at once)")
    p.add_argument("--version", action="version", version=f"nnbisim {__version__}")
    p.add_argument("--threads", metavar="N", default=None,
                   help=f"CPU threads of the bound engines (torch), given before the command "
                   f"(default: ${THREADS_ENV}, else 1: on these small batched matrices one "
                   "thread is as fast, and spare threads spin-wait when another process holds "
                   "a core)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser,
                           metavar="COMMAND")
    for add in (_merge, _spec, _check, _epsilon, _agree, add_assure, add_quant, add_vnncomp,
                _demo):
        add(sub)
    return p
