"""Checks of a command's output paths, before any work: every file or folder it will write can
be written (its folder exists, or can be made, and takes new files), and an existing output is
replaced only with ``--force``. Light to import, like :mod:`nnbisim.cli.checks`."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from nnbisim.core.errors import InputError, OverwriteError

# (attribute, option as the user wrote it, a folder?) of every output a command takes
OUTPUTS = (("out_file", "-o", False), ("json", "--json", False), ("out_dir", "-o", True),
           ("workdir", "--workdir", True))
SPEC_FILES = "diff_*.vnnlib"  # what `spec` writes into a folder


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cannot_create_in(folder: Path) -> str | None:
    """Why no new file can be made in the existing ``folder`` (None when one can): tried, since
    permission bits do not tell (root, read-only mounts, /proc)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".nnbisim-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def writable(path: Path | None, option: str, folder: bool = False,
             make_parents: bool = True) -> None:
    """Refuse an output ``path`` that cannot be written: a file where a folder is wanted (or
    the other way round), a folder that does not exist (unless it will be made), or a place
    where no file can be created."""
    if path is None:
        return
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise InputError(f"{option} {p}: is a file; give a folder")
    if not folder and p.is_dir():
        raise InputError(f"{option} {p}: is a folder; give a file name")
    start = p if folder else p.parent
    where = _nearest_existing(start.absolute())
    if not make_parents and where != start.absolute():
        raise InputError(f"{option} {p}: the folder {start} does not exist; create it first")
    if not where.is_dir():
        raise InputError(f"{option} {p}: {where} is a file, not a folder; choose another path")
    why = _cannot_create_in(where)
    if why is not None:
        raise InputError(f"{option} {p}: no file can be written in {where} ({why}); choose a "
                         "writable folder")


def outputs(args: argparse.Namespace) -> None:
    """Every output option of the command (``-o``, ``--json``, ``--workdir``, a folder of
    ``spec``) can be written; ``spec``'s outputs are new unless ``--force``."""
    for name, option, folder in OUTPUTS:
        writable(getattr(args, name, None), option, folder)
    if getattr(args, "command", None) == "spec" and args.out is not None:
        one_file = args.output is not None
        out = Path(args.out)
        if not one_file and out.is_file():
            raise InputError(f"-o {out}: is a file; without --output, -o names a folder")
        writable(out, "-o", folder=not one_file)
        old = ([out] if out.is_file() else []) if one_file else (
            sorted(out.glob(SPEC_FILES)) if out.is_dir() else [])
        if old and not args.force:
            raise OverwriteError(f"{old[0]}: already exists; pass --force to overwrite it or "
                                 "choose another -o")
