"""Checks of the command line's arguments that run before anything heavy loads: missing files,
outputs that exist (without ``--force``), numbers out of range, malformed input sets. Each
failure is one :class:`~nnbisim.core.errors.InputError` line; the handlers then trust ``args``
(and find the input set in ``args.inputs``)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nnbisim.core.errors import InputError
from nnbisim.specs.io import read_spec
from nnbisim.specs.regions import parse_vector
from nnbisim.specs.sets import Box, InputSet


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
        return read_spec(args.input).inputs
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


def common(args: argparse.Namespace) -> None:
    """The checks every command shares: its input files exist, its outputs are new (or
    ``--force``), budgets and counts are positive, and its input set (``args.inputs``)."""
    for name in ("n1", "n2", "merged", "model", "property", "compressed", "manifest", "pairs",
                 "query", "result_in"):
        existing(getattr(args, name, None))
    force = getattr(args, "force", False)
    for name in ("json", "out_file"):
        fresh(getattr(args, name, None), force)
    for name in ("time_budget", "query_timeout", "timeout", "eps_budget", "samples"):
        value = getattr(args, name, None)
        if value is not None:
            positive(value, "--" + name.replace("_", "-"))
    for name, top_open in (("rel_gap", True), ("quick_direct", True),
                           ("compressed_share", False), ("fraction", False)):
        value = getattr(args, name, None)
        if value is not None:
            share(value, "--" + name.replace("_", "-"), top_open)
    if getattr(args, "compressed", None) is not None and getattr(args, "compress", None):
        raise InputError("give one of --compressed N2.onnx or --compress METHOD, not both")
    if hasattr(args, "region_required"):
        args.inputs = region(args, args.region_required)
