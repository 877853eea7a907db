"""``nnbisim vnncomp translate`` and ``back``: two-network queries as merged instances and
their answers back."""

from __future__ import annotations

import argparse

from nnbisim.core.errors import InputError
from nnbisim.core.verdict import Status
from nnbisim.specs.results import parse_vnncomp_result, write_result
from nnbisim.vnncomp.bridge import back_translate, translate


def cmd_translate(args: argparse.Namespace) -> int:
    tr = translate(args.network, args.query, args.out_dir, base=args.base, force=args.force)
    print(f"{tr.merged}\n{tr.vnnlib1}\n{tr.vnnlib2}\n{tr.manifest}")
    return 0


def cmd_back(args: argparse.Namespace) -> int:
    status, x, note = parse_vnncomp_result(args.result_in.read_text(errors="replace"))
    if status is not Status.VIOLATED or x is None:
        raise InputError(f"{args.result_in}: is not a sat result with a counterexample "
                         f"({status.vnncomp}{'; ' + note if note else ''}); nothing to translate")
    args.out_file.parent.mkdir(parents=True, exist_ok=True)  # checked writable up front
    write_result(args.out_file, "sat", back_translate(args.manifest, x))
    print(args.out_file)
    return 0
