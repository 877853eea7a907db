"""The arguments of ``assure``, ``enlarge``, ``convert``, ``discrepancy``, ``repair`` and the
``vnncomp`` group (light to import; see :mod:`nnbisim.cli.parser`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnbisim.adapters.options import (
    COMPRESSIONS,
    FORMS,
    QPARAMS,
    CompressOptions,
    DistillOptions,
)
from nnbisim.cli import checks
from nnbisim.cli.args import (
    VERSIONS,
    command,
    device,
    finish,
    force,
    max_boxes,
    networks,
    out_file,
    quiet,
    region,
    workers,
)
from nnbisim.tasks.options import REFINES, AssureOptions, RepairOptions

ASSURE, REPAIR = AssureOptions(), RepairOptions()
COMPRESS, DISTILL = CompressOptions(), DistillOptions()


def _assure(sub) -> None:
    a = command(sub, "assure", "decide a property of N1 through a compressed N2 and the "
                "certified bound on N1 - N2", "tasks:cmd_assure")
    a.add_argument("n1", type=Path, metavar="N1.onnx", help="the original network")
    a.add_argument("property", type=Path, metavar="PROPERTY.vnnlib",
                   help="the property of N1 to decide (its unsafe set per input box)")
    a.add_argument("--compressed", type=Path, metavar="N2.onnx",
                   help="the compressed network (else --compress makes one)")
    a.add_argument("--compress", choices=COMPRESSIONS, default=None,
                   help="how to make N2 when --compressed is not given (default: distill)")
    a.add_argument("--hidden", default=",".join(map(str, DISTILL.hidden)),
                   help="distill: hidden layer sizes")
    a.add_argument("--fraction", type=float, default=COMPRESS.fraction,
                   help="prune: fraction of the hidden neurons")
    a.add_argument("--remove", action="store_true", help="prune: make the network smaller "
                   "(default: zero the neurons, same layer sizes)")
    a.add_argument("--sigma", type=float, default=COMPRESS.sigma,
                   help="perturb: standard deviation of the noise on every weight and bias")
    a.add_argument("--seed", type=int, default=DISTILL.seed,
                   help="distill: training seed; perturb: noise seed")
    a.add_argument("--time-budget", type=float, default=ASSURE.time_budget, metavar="S",
                   help="seconds for the decision (making N2 with --compress comes before it)")
    max_boxes(a, "in all, shared among the routes as the time budget is (--quick-direct of it, "
              "--compressed-share of the rest, the rest to N1 directly) and within a route "
              "among its boxes; a plug-in verifier's queries stay timed", what="input boxes")
    a.add_argument("--quick-direct", type=float, default=ASSURE.quick_direct, metavar="SHARE",
                   help="share of the budget for a first look at N1 itself (0: only a witness "
                   "search; proofs then come through N2)")
    a.add_argument("--compressed-share", type=float, default=ASSURE.compressed_share,
                   metavar="SHARE",
                   help="share of the rest of the budget for the route through N2; what it "
                   "leaves open is decided on N1 directly with the remainder (1: all of it)")
    a.add_argument("--refine", choices=REFINES, default=ASSURE.refine,
                   help="how the route through N2 refines a box: bab (one branch and bound, "
                   "each piece proved by its own certified eps and N2's bound; the own engine "
                   "only) or halves (split in two, eps and N2 per half, to depth 8; what other "
                   "verifiers use)")
    a.add_argument("--verifier", default=ASSURE.verifier,
                   help="decides the enlarged property on N2 and the boxes left to N1: bounds "
                   "(the own engine), marabou, vnncomp:DIR or a plug-in; one box and unsafe "
                   "polytope per query, counterexamples replayed")
    device(a)
    a.add_argument("--workdir", type=Path,
                   help="keep the network --compress makes in this folder (default: not kept)")
    workers(a, "the branch and bounds (through N2, and on N1 directly) on N processes "
            "(default 1: this process; a --max-boxes limit keeps them in one)")
    finish(a)


def _enlarge(sub) -> None:
    e = command(sub, "enlarge", "write a property of N1 as the enlarged property N2 must "
                "satisfy (for any verifier on N2)", "tasks:cmd_enlarge")
    networks(e)
    e.add_argument("property", type=Path, metavar="PROPERTY.vnnlib",
                   help="the property of N1 to enlarge")
    out_file(e, "the enlarged property to write")
    e.add_argument("--vnnlib-version", choices=VERSIONS, default="1.0",
                   help="1.0: per box its own enlarged set; 2.0: one set for all boxes (the "
                   "hull of their intervals), which needs one unsafe set in the source")
    e.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="for certifying N1 - N2, shared among the boxes")
    max_boxes(e, "in all, shared among the property's boxes as the time budget is (each gets "
              "the rest divided by the boxes left)")
    device(e)
    finish(e)


def _compress(sub) -> None:
    c = command(sub, "compress", "a compressed copy N2 of N1 (float16, int8, pruned or "
                "distilled), as ONNX", "compress:cmd_compress")
    c.add_argument("n1", type=Path, metavar="N1.onnx", help="the network to compress")
    out_file(c, "the compressed network to write (.onnx, or .onnx.gz gzip'd)")
    c.add_argument("--onnx-form", choices=FORMS, default="gemm",
                   help="gemm: Flatten/Gemm/Relu; matmul-1d: input [n], MatMul(W, x) then Add "
                   "(as VNN-COMP 2026's pruned ACAS Xu networks)")
    c.add_argument("--method", choices=COMPRESSIONS, default="float16",
                   help="float16/int8/int8-channel: weights rounded; prune: hidden neurons "
                   "zeroed by magnitude; perturb: Gaussian noise on every weight and bias; "
                   "distill: a small network trained on N1's outputs over the input set (give "
                   "one)")
    region(c, required=False)
    c.add_argument("--fraction", type=float, default=COMPRESS.fraction,
                   help="prune: fraction of the hidden neurons")
    c.add_argument("--remove", action="store_true", help="prune: make the network smaller "
                   "(default: zero the neurons, same layer sizes)")
    c.add_argument("--hidden", default=",".join(map(str, DISTILL.hidden)),
                   help="distill: hidden layer sizes")
    c.add_argument("--sigma", type=float, default=COMPRESS.sigma,
                   help="perturb: standard deviation of the noise on every weight and bias")
    c.add_argument("--seed", type=int, default=DISTILL.seed,
                   help="distill: training seed; perturb: noise seed")
    force(c)


def add_assure(sub) -> None:
    _compress(sub)
    _assure(sub)
    _enlarge(sub)


def add_quant(sub) -> None:
    c = command(sub, "convert", "a PyTorch state dict (float or int8) as ONNX",
                "quant:cmd_convert")
    c.add_argument("model", type=Path, metavar="MODEL.pth", help="the state dict to convert")
    c.add_argument("--arch", help="layer sizes, e.g. 784-256-64-10 (checked against the file)")
    out_file(c, "the ONNX file to write")
    force(c)

    d = command(sub, "discrepancy", "certified [min, max] of N1 - N2 per output when a "
                "network is quantized (int8 activations rounded exactly)",
                "quant:cmd_discrepancy")
    networks(d, "the original (.onnx or .pth)", "the quantized copy (.onnx or .pth)",
             "")
    region(d, required=True)
    d.add_argument("--time-budget", type=float, default=60.0, metavar="S",
                   help="seconds per box of the input set")
    max_boxes(d, "per box of the input set, as the time budget", what="boxes of input codes")
    finish(d)
    _repair(sub)


def _repair(sub) -> None:
    r = command(sub, "repair", "retrain an int8 N2 until its certified discrepancy to N1 meets "
                "a target (second paper)", "quant:cmd_repair")
    networks(r, "the original float network", "the quantized network to repair", "")
    r.add_argument("--arch", help="layer sizes, e.g. 784-256-64-10 (checked against the files)")
    r.add_argument("--regions", default="paper",
                   help="paper (the ten images, 2x2 centre patch +-0.05), ball:R:I,J,... "
                   "(L-inf balls around test images 0-4999) or a VNN-LIB file of input boxes")
    r.add_argument("--delta", type=float, default=0.05, help="patch perturbation (paper)")
    r.add_argument("--target-ratio", type=float, default=REPAIR.target_ratio,
                   help="stop when every region's certified discrepancy is at most this "
                   "fraction of its initial value")
    r.add_argument("--lambda", dest="lam", type=float, default=REPAIR.lam,
                   help="targets move 1/lambda of the way towards N1 per round")
    r.add_argument("--rounds", type=int, default=REPAIR.rounds, help="retraining rounds at most")
    r.add_argument("--epochs", type=int, default=REPAIR.epochs, help="epochs per round")
    r.add_argument("--samples", type=int, default=REPAIR.samples,
                   help="retraining samples per region")
    r.add_argument("--qparams", default=REPAIR.qparams, choices=QPARAMS,
                   help="calibrate the activation quantization before retraining, or keep N2's")
    r.add_argument("--data", type=Path, help="the data folder (default ../shared/data)")
    r.add_argument("--seed", type=int, default=REPAIR.seed, help="sampling and training seed")
    workers(r, "regions certified at a time, each in its own process (default 1: one after "
            "another in this process)")
    out_file(r, "the repaired int8 ONNX file to write")
    finish(r)


def _benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, metavar="DIR",
                   help="the benchmark folder to write")
    p.set_defaults(empty_out_dir=True)
    p.add_argument("--seed", type=int, default=0, help="places the thresholds, orders the rows")
    p.add_argument("--timeout", type=float, default=60.0, help="per instance (s)")
    p.add_argument("--eps-budget", type=float, default=30.0,
                   help="time to bracket eps per pair (s)")
    p.add_argument("--question", choices=("eps", "top1"), default="eps",
                   help="eps: is some |y1 - y2|_i >= t?; top1: does N2's top class differ from "
                   "N1's where N1 leads by more than t? (thresholds bracketed per pair)")
    p.add_argument("--gzip", action="store_true",
                   help="write .onnx.gz and .vnnlib.gz files, as VNN-COMP 2026 ships them")
    p.add_argument("--onnx-form", choices=FORMS, default="gemm",
                   help="the networks' ONNX form: gemm (the files as given) or matmul-1d "
                   "(input [n], MatMul(W, x) then Add, as VNN-COMP 2026's pruned ACAS Xu)")
    workers(p)
    force(p)
    quiet(p)


def _solve(vs) -> None:
    s = command(vs, "solve", "answer every instance of a benchmark folder on many workers, "
                "with nnbisim or any tool's scripts, scored against expected.csv",
                "vnncomp_solve:cmd_solve")
    s.add_argument("bench", type=Path, metavar="BENCH_DIR", help="a folder with instances.csv")
    s.add_argument("--results", type=Path, required=True, metavar="OUT.csv", help="one row per "
                   "instance as it ends (onnx,vnnlib,result,seconds,replays,note); a rerun "
                   "resumes from the rows there")
    s.add_argument("--tool", default="nnbisim", metavar="DIR", help="nnbisim (default) or a "
                   "folder with VNN-COMP's prepare_instance.sh and run_instance.sh")
    s.add_argument("--timeout-factor", type=float, default=1.0, metavar="F",
                   help="each instance gets its timeout times F (default 1)")
    s.add_argument("--fresh", action="store_true", help="start the results file over instead "
                   "of resuming it")
    workers(s)
    finish(s)
    s.set_defaults(check=checks.vnncomp_solve)


def add_vnncomp(sub) -> None:
    v = sub.add_parser("vnncomp", help="VNN-COMP: translate queries, write benchmarks, run "
                       "instances", description="VNN-COMP: translate queries, write "
                       "benchmarks, run instances")
    vs = v.add_subparsers(dest="vnncomp_command", required=True, parser_class=type(v),
                          metavar="COMMAND")
    t = command(vs, "translate", "a two-network 2.0 query as one merged network and a "
                "single-network property (1.0 and 2.0)", "vnncomp_files:cmd_translate")
    t.add_argument("network", metavar="NETWORK_FIELD", help="the instance's network field, "
                   "e.g. \"[('f', 'a.onnx'), ('g', 'b.onnx')]\"")
    t.add_argument("query", type=Path, metavar="QUERY.vnnlib", help="the two-network query")
    t.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, metavar="DIR",
                   help="folder for the merged network, the properties and the manifest")
    t.add_argument("--base", type=Path, help="folder the field's paths are relative to "
                   "(default: the current one)")
    force(t)

    b = command(vs, "back", "a sat result of a translated instance as the 2.0 assignment of "
                "the original query", "vnncomp_files:cmd_back")
    b.add_argument("manifest", type=Path, metavar="DIR/translation.json",
                   help="the manifest translate wrote")
    b.add_argument("result_in", type=Path, metavar="RESULT",
                   help="the merged instance's result file (sat with its counterexample)")
    out_file(b, "the result file of the original query to write")
    force(b)

    r = command(vs, "run", "decide one instance and write its result file (what "
                "run_instance.sh calls)", "vnncomp_run:cmd_run")
    r.add_argument("network", metavar="NETWORK_FIELD", help="the instance's network field")
    r.add_argument("vnnlib", type=Path, metavar="VNNLIB", help="the instance's property")
    r.add_argument("result", type=Path, metavar="RESULTFILE", help="where the answer goes")
    r.add_argument("timeout", type=float, metavar="TIMEOUT", help="seconds")
    r.add_argument("--base", type=Path, help="folder the network field's paths are relative to")
    workers(r, "the own branch and bound on N processes (default 1: this process; "
            "run_instance.sh passes NNBISIM_WORKERS, default every core)")
    r.set_defaults(check=checks.vnncomp_run)

    _solve(vs)

    k = command(vs, "benchmark", "an equivalence benchmark with known answers from PAIRS.csv "
                "(n1.onnx,n2.onnx,region.vnnlib)", "vnncomp_run:cmd_benchmark")
    k.add_argument("pairs", type=Path, metavar="PAIRS.csv", help="one pair and region per line")
    _benchmark_args(k)
    a = command(vs, "acasxu", "the ready generator: ACAS Xu networks against compressed copies "
                "over the property regions", "vnncomp_run:cmd_acasxu")
    a.add_argument("--networks", default="1_1,2_2,3_3", help="ACAS Xu networks, e.g. 1_1,2_2")
    a.add_argument("--properties", default="1,2,3,4", help="whose input boxes are the regions")
    a.add_argument("--compression", default="float16", choices=COMPRESSIONS,
                   help="how the copies are made")
    a.add_argument("--data", type=Path, help="the ACAS Xu folder (default ../shared/data/acasxu "
                   "beside the repository)")
    _benchmark_args(a)
    a.set_defaults(check=checks.acasxu)
