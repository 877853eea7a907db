"""Checks of the command line's arguments that run before anything heavy loads: missing files,
outputs that exist (without ``--force``), numbers out of range, malformed input sets. Each
failure is one :class:`~nnbisim.core.errors.InputError` line; the handlers then trust ``args``
(and find the input set in ``args.inputs``)."""

from __future__ import annotations

import argparse
import csv
import math
import re
from importlib.metadata import entry_points
from pathlib import Path

from nnbisim.adapters.onnx_peek import Peek, peek
from nnbisim.cli.outputs import outputs, writable
from nnbisim.core.errors import InputError, ShapeMismatchError, SpecError
from nnbisim.core.limits import FLOAT_BYTES, MEMORY_ENV, check_dense, memory_budget, size_text
from nnbisim.specs.io import read_input_set, read_spec, read_spec_cases, write_text
from nnbisim.specs.regions import parse_vector
from nnbisim.specs.sets import Box, InputSet
from nnbisim.vnncomp.formats import find_base, parse_network_field, resumable

TORCH_FILES = (".pth", ".pt")  # state dicts: read by torch, not looked at here
# option values that must be positive (budgets, timeouts, counts) or at least 0, by attribute
POSITIVE = {"time_budget": "--time-budget", "query_timeout": "--query-timeout",
            "timeout": "--timeout", "eps_budget": "--eps-budget", "samples": "--samples",
            "delta": "--delta", "target_ratio": "--target-ratio", "lam": "--lambda",
            "rounds": "--rounds", "epochs": "--epochs", "n_outputs": "--n-outputs"}
NON_NEGATIVE = {"eps": "--eps", "rel_tol": "--rel-tol", "seed": "--seed", "output": "--output",
                "sigma": "--sigma", "top1_delta": "--delta", "agree_delta": "--agree"}
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# the verifiers known without importing them (nnbisim.verifiers.registry loads onnxruntime);
# a test keeps this in step with registry.BUILTIN_VERIFIERS and ENTRY_POINT_GROUP
VERIFIERS = ("bounds", "marabou")
ENTRY_POINT_GROUP = "nnbisim.verifiers"


def existing(path: Path | None, what: str = "file") -> None:
    """Refuse a path that is not an existing file."""
    if path is not None and not Path(path).is_file():
        raise InputError(f"{path}: no such {what}; check the path")


def fresh(path: Path | None, force: bool) -> None:
    """Refuse to overwrite an existing output file unless ``--force``."""
    if path is not None and Path(path).exists() and not force:
        raise InputError(f"{path}: already exists; pass --force to overwrite it")


def positive(value: float, option: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{option} {value}: give a positive number")


def share(value: float, option: str, top_open: bool = False) -> None:
    """A fraction in [0, 1] (or [0, 1) with ``top_open``)."""
    if not (0 <= value < 1 if top_open else 0 <= value <= 1):
        raise InputError(f"{option} {value}: give a number in [0, 1{')' if top_open else ']'}")


def _ball(args: argparse.Namespace) -> InputSet:
    if args.center is None or args.radius is None:
        raise InputError("--center and --radius go together; give both")
    center = parse_vector(args.center, "--center")
    radius = parse_vector(args.radius, "--radius")
    domain = None
    if args.domain_lower is not None or args.domain_upper is not None:
        if args.domain_lower is None or args.domain_upper is None:
            raise InputError("--domain-lower and --domain-upper go together; give both")
        domain = Box(parse_vector(args.domain_lower, "--domain-lower"),
                     parse_vector(args.domain_upper, "--domain-upper"))
    if radius.size not in (1, center.size):
        raise InputError(f"--radius has {radius.size} values but --center has {center.size}; "
                         "give one radius or one per input")
    return InputSet.of(Box.from_center(center, radius if radius.size > 1 else radius[0],
                                       domain))


def region(args: argparse.Namespace, required: bool) -> InputSet | None:
    """The input set the region options describe (``--input``, ``--lower/--upper`` or
    ``--center/--radius``), or None when none was given and none is required."""
    given = [args.input is not None, args.lower is not None or args.upper is not None,
             args.center is not None or args.radius is not None]
    if sum(given) > 1:
        raise InputError("give one input set: --input, or --lower/--upper, or --center/--radius")
    if args.input is not None:
        return read_input_set(args.input)
    if given[1]:
        if args.lower is None or args.upper is None:
            raise InputError("--lower and --upper go together; give both")
        return InputSet.of(Box(parse_vector(args.lower, "--lower"),
                               parse_vector(args.upper, "--upper")))
    if given[2]:
        return _ball(args)
    if required:
        raise InputError("no input set: give --input P.vnnlib, --lower/--upper or "
                         "--center/--radius")
    return None


def _networks(args: argparse.Namespace) -> dict[str, Peek]:
    """A first look at every ONNX network the command takes (one input, one output each)."""
    out = {}
    for name in ("n1", "n2", "merged", "model", "compressed"):
        path = getattr(args, name, None)
        if path is None or Path(path).suffix in TORCH_FILES:
            continue
        p = out[name] = peek(path)
        if len(p.inputs) != 1 or len(p.outputs) != 1:
            raise InputError(f"{path}: has {len(p.inputs)} inputs and {len(p.outputs)} outputs; "
                             "nnbisim takes networks with exactly one of each")
    return out


def _merged_fits(args: argparse.Namespace, nets: dict[str, Peek]) -> None:
    """A merged network M reads N1's inputs and gives N1 - N2 (or [N1, N2, N1 - N2])."""
    m, first = nets.get("merged"), nets.get("n1")
    if m is None or first is None:
        return
    if None not in (m.inputs[0], first.inputs[0]) and m.inputs != first.inputs:
        raise ShapeMismatchError(f"{args.merged} takes {m.inputs[0]} inputs but {args.n1} "
                                 f"takes {first.inputs[0]}; give the merged file of this pair")
    n = first.outputs[0]
    if None not in (m.outputs[0], n) and m.outputs[0] not in (n, 3 * n):
        raise ShapeMismatchError(f"{args.merged} gives {m.outputs[0]} outputs but {args.n1} "
                                 f"gives {n} (a merged file gives {n}, or {3 * n} with "
                                 "--outputs all); give the merged file of this pair")


def _sizes_agree(args: argparse.Namespace, nets: dict[str, Peek]) -> None:
    """The pair reads inputs of one size and gives outputs of one size; the input set and a
    property fit N1."""
    first = nets.get("n1")
    for other in ("n2", "compressed"):
        if first is None or other not in nets:
            continue
        a, b = first, nets[other]
        if a.inputs[0] is not None and b.inputs[0] is not None and a.inputs != b.inputs:
            raise ShapeMismatchError(f"{args.n1} takes {a.inputs[0]} inputs but "
                                     f"{getattr(args, other)} takes {b.inputs[0]}; both networks "
                                     "must read inputs of the same size")
        if a.outputs[0] is not None and b.outputs[0] is not None and a.outputs != b.outputs:
            raise ShapeMismatchError(f"{args.n1} gives {a.outputs[0]} outputs but "
                                     f"{getattr(args, other)} gives {b.outputs[0]}; both "
                                     "networks must have the same outputs to be compared")
    _merged_fits(args, nets)
    net = first or nets.get("model")
    inputs = getattr(args, "inputs", None)
    if net is not None and inputs is not None and net.inputs[0] not in (None, inputs.dim):
        raise ShapeMismatchError(f"the input set has {inputs.dim} values per point but the "
                                 f"network takes {net.inputs[0]}; give one bound per input")
    prop = getattr(args, "property", None)
    if first is not None and prop is not None:
        case = read_spec_cases(prop)[0]
        if first.outputs[0] not in (None, case.unsafe.out_dim):
            raise ShapeMismatchError(f"{prop} is about {case.unsafe.out_dim} outputs but "
                                     f"{args.n1} gives {first.outputs[0]}; give the network's "
                                     "property")
        if first.inputs[0] not in (None, case.box.dim):
            raise ShapeMismatchError(f"{prop} has {case.box.dim} inputs per point but "
                                     f"{args.n1} takes {first.inputs[0]}; give the network's "
                                     "property")


def common(args: argparse.Namespace) -> None:
    """The checks every command shares: its input files exist, its outputs are new (or
    ``--force``), budgets and counts are positive, and its input set (``args.inputs``)."""
    if getattr(args, "command", None) == "spec" and (args.eps is None) == (
            args.agree_delta is None):
        raise InputError("spec: give --eps E (a discrepancy property) or --agree D (top-1 "
                         "disagreement), one of them")
    for name in ("n1", "n2", "merged", "model", "property", "compressed", "manifest", "pairs",
                 "query", "result_in"):
        existing(getattr(args, name, None))
    force = getattr(args, "force", False)
    outputs(args)
    for name in ("json", "out_file"):
        fresh(getattr(args, name, None), force)
    for name, option in POSITIVE.items():
        value = getattr(args, name, None)
        if value is not None:
            positive(value, option)
    for name, option in NON_NEGATIVE.items():
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"{option} {value}: give a number >= 0")
    for name, top_open in (("rel_gap", True), ("quick_direct", True),
                           ("compressed_share", False), ("fraction", False)):
        value = getattr(args, name, None)
        if value is not None:
            share(value, "--" + name.replace("_", "-"), top_open)
    if getattr(args, "compressed", None) is not None and getattr(args, "compress", None):
        raise InputError("give one of --compressed N2.onnx or --compress METHOD, not both")
    out_dir = getattr(args, "out_dir", None)
    if getattr(args, "empty_out_dir", False) and out_dir is not None and not force:
        if (Path(out_dir).is_dir() and any(Path(out_dir).iterdir())
                and not resumable(Path(out_dir))):
            raise InputError(f"{out_dir}: exists and is not empty; pass --force to overwrite "
                             "or choose another --out")
    _engines(args)
    if getattr(args, "hidden", None) is not None:
        hidden_sizes(args.hidden)
    if getattr(args, "pairs", None) is not None:
        _pairs_fit(args.pairs)
    if hasattr(args, "region_required"):
        args.inputs = region(args, args.region_required)
    nets = _networks(args)
    _sizes_agree(args, nets)
    _samples_fit(args, nets)
    _decision_outputs(args, nets)


def _decision_outputs(args: argparse.Namespace, nets: dict[str, Peek]) -> None:
    """``--outputs 0,2`` (with ``--eps``): distinct indices of N1's outputs, parsed in place."""
    text = getattr(args, "eps_outputs", None)
    if text is None:
        return
    if getattr(args, "eps", None) is None:
        raise InputError("--outputs needs --eps E: it picks the outputs a decision asks about")
    first = nets.get("n1")
    m = first.outputs[0] if first is not None else None
    try:
        idx = tuple(int(t) for t in text.split(","))
    except ValueError:
        idx = ()
    if (not idx or len(set(idx)) != len(idx) or min(idx) < 0
            or (m is not None and max(idx) >= m)):
        top = f" from 0 to {m - 1}" if m is not None else ""
        raise InputError(f"--outputs {text!r}: give distinct output indices{top}, like 0,2")
    args.eps_outputs = idx


def _engines(args: argparse.Namespace) -> None:
    """``--device`` names a device torch knows, ``--verifier`` a verifier that exists."""
    device = getattr(args, "device", None)
    if device is not None and not DEVICE.fullmatch(device):
        raise InputError(f"--device {device!r}: give auto, cpu, cuda, cuda:N or mps")
    name = getattr(args, "verifier", None)
    known = VERIFIERS + (("none",) if getattr(args, "command", None) == "epsilon" else ())
    if name is None or name in known:
        return
    if name.startswith("vnncomp:"):
        tool = Path(name.removeprefix("vnncomp:").strip()).expanduser()
        if not (tool / "run_instance.sh").is_file():
            raise InputError(f"--verifier {name}: {tool} has no run_instance.sh; vnncomp:DIR "
                             "needs a folder with VNN-COMP's tool scripts")
    elif not any(True for _ in entry_points(group=ENTRY_POINT_GROUP, name=name)):
        raise InputError(f"--verifier {name!r}: no such verifier; give {', '.join(known)}, "
                         "vnncomp:DIR or the name of an installed plug-in")


def _one_each(path: Path) -> Peek:
    p = peek(path)
    if len(p.inputs) != 1 or len(p.outputs) != 1:
        raise InputError(f"{path}: has {len(p.inputs)} inputs and {len(p.outputs)} outputs; "
                         "nnbisim takes networks with exactly one of each")
    return p


def _pairs_fit(path: Path) -> None:
    """Each line of a benchmark's PAIRS.csv names two networks of the same sizes and a region
    that fits them (checked before the first pair's eps is bracketed)."""
    with Path(path).open(newline="", errors="replace") as f:
        rows = list(enumerate(csv.reader(f), 1))
    for k, row in rows:
        if not row or all(not c.strip() for c in row) or row[0].startswith("#"):
            continue
        if len(row) != 3:
            raise InputError(f"{path}:{k}: {len(row)} fields; each line is "
                             "n1.onnx,n2.onnx,region.vnnlib")
        n1, n2, region_file = (Path(path).parent / c.strip() for c in row)
        for p in (n1, n2, region_file):
            existing(p)
        a, b = _one_each(n1), _one_each(n2)
        if a != b:
            raise ShapeMismatchError(f"{path}:{k}: {n1} takes {a.inputs[0]} inputs and gives "
                                     f"{a.outputs[0]} outputs but {n2} takes {b.inputs[0]} and "
                                     f"gives {b.outputs[0]}; pair networks of the same sizes")
        dim = read_input_set(region_file).dim
        if a.inputs[0] not in (None, dim):
            raise ShapeMismatchError(f"{path}:{k}: {region_file} has {dim} inputs per point "
                                     f"but {n1} takes {a.inputs[0]}; give a region of the pair")


def hidden_sizes(text: str) -> tuple[int, ...]:
    """``--hidden 10,10``: positive layer sizes within the memory budget."""
    try:
        sizes = tuple(int(h) for h in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise InputError(f"--hidden {text!r}: give positive layer sizes like 10,10")
    for k, n in enumerate(sizes):
        check_dense(n, n, f"--hidden {text!r}: layer {k + 1}")
    return sizes


def _samples_fit(args: argparse.Namespace, nets: dict[str, Peek]) -> None:
    """``check --samples``: the random inputs and the three files' outputs fit in memory."""
    if getattr(args, "command", None) != "check":
        return
    width = max([n or 1 for p in nets.values() for n in (*p.inputs, *p.outputs)] or [1])
    need = 4.0 * args.samples * width * FLOAT_BYTES
    if need > memory_budget():
        raise InputError(f"--samples {args.samples}: the inputs and outputs replayed need "
                         f"{size_text(need)}, over the memory budget of "
                         f"{size_text(memory_budget())} (${MEMORY_ENV}); give fewer samples")


def _instance_fits(nets: tuple[tuple[str, Path], ...], vnnlib: Path) -> None:
    """Every network of the instance reads the property's inputs and gives its outputs."""
    spec = read_spec(vnnlib)
    for _, path in nets:
        p = _one_each(path)
        if p.outputs[0] not in (None, spec.n_outputs):
            raise ShapeMismatchError(f"{vnnlib} is about {spec.n_outputs} outputs but {path} "
                                     f"gives {p.outputs[0]}; give the network's property")
        if p.inputs[0] not in (None, spec.n_inputs):
            raise ShapeMismatchError(f"{vnnlib} has {spec.n_inputs} inputs per point but "
                                     f"{path} takes {p.inputs[0]}; give the network's property")


def vnncomp_run(args: argparse.Namespace) -> None:
    """An instance whose files are missing or whose network field is malformed is answered
    ``error`` (with the reason) in its result file, as VNN-COMP expects, and refused."""
    try:
        common(args)
        base = args.base if args.base is not None else find_base(args.network, args.vnnlib)
        nets = parse_network_field(args.network, base)
        existing(args.vnnlib, "VNN-LIB property")
        _instance_fits(nets, args.vnnlib)
        writable(args.result, "RESULTFILE", make_parents=False)
    except InputError as exc:
        try:
            write_text(args.result, f"error\n{exc}\n")
        except SpecError:
            pass  # the result cannot be written either: the instance's own error comes first
        raise


def vnncomp_solve(args: argparse.Namespace) -> None:
    common(args)
    if not (args.bench / "instances.csv").is_file():
        raise InputError(f"{args.bench}: has no instances.csv; give a VNN-COMP benchmark folder")
    if not args.timeout_factor > 0:
        raise InputError(f"--timeout-factor must be positive, got {args.timeout_factor}")
    if args.tool != "nnbisim" and not (Path(args.tool) / "run_instance.sh").is_file():
        raise InputError(f"--tool {args.tool}: no run_instance.sh there; give nnbisim or a "
                         "folder with VNN-COMP's tool scripts")
    if args.results.is_dir():
        raise InputError(f"--results {args.results}: is a folder; give a CSV file path")
    writable(args.results, "--results", make_parents=True)


def acasxu(args: argparse.Namespace) -> None:
    common(args)
    try:
        [int(p) for p in args.properties.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--properties {args.properties!r}: give numbers like 1,2,3,4") from None
