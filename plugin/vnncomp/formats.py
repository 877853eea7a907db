"""VNN-COMP's instance formats: network fields and ``instances.csv``.

An instance's network field is one ONNX path, or (VNN-COMP 2026) a Python-literal list of
``(name, path)`` pairs for a query over several networks, e.g.
``[('f', 'onnx/A.onnx'), ('g', 'onnx/A_pruned5.onnx')]``; paths are relative to the benchmark
folder. Result files are :mod:`nnbisim.specs.results`.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path

from nnbisim.core.errors import InputError, NnbisimError

PARTIAL = "pairs.partial.jsonl"  # a benchmark folder's pairs done so far, while it is written


def resumable(folder: Path) -> bool:
    """Is ``folder`` a benchmark whose writing stopped halfway (a rerun resumes it)?"""
    return (folder / PARTIAL).is_file() and not (folder / "benchmark.json").exists()


@dataclass(frozen=True)
class Instance:
    """One line of ``instances.csv``: network field (resolved), property path, timeout."""

    networks: tuple[tuple[str, Path], ...]
    vnnlib: Path
    timeout: float
    field: str  # as written in the csv
    line: int
    prop: str = ""  # the property's path as written in the csv

def parse_network_field(field: str, base: Path | None = None) -> tuple[tuple[str, Path], ...]:
    """``path`` -> ``(("N", path),)``; a list of ``(name, path)`` pairs -> those pairs. Paths
    are resolved against ``base`` (the benchmark folder) and must exist."""
    text = field.strip()
    base = Path(base) if base is not None else Path.cwd()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InputError(f"network field {text!r} is not a Python list of (name, path) "
                             "pairs; write it like [('f', 'onnx/a.onnx'), ('g', 'onnx/b.onnx')]"
                             ) from None
        if (not isinstance(value, list) or not value
                or not all(isinstance(p, tuple) and len(p) == 2
                           and all(isinstance(v, str) for v in p) for p in value)):
            raise InputError(f"network field {text!r} must be a non-empty list of (name, path) "
                             "string pairs")
        pairs = [(name, Path(path)) for name, path in value]
    else:
        pairs = [("N", Path(text))]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"network field {text!r} names a network twice; give each its own name")
    out = []
    for name, path in pairs:
        full = path if path.is_absolute() else base / path
        if not full.is_file():
            raise InputError(f"network {name}: {full} does not exist; check the network field "
                             f"{text!r} (paths are relative to {base})")
        out.append((name, full))
    return tuple(out)

def format_network_field(pairs: list[tuple[str, str]]) -> str:
    """The 2026 network field for ``(name, relative path)`` pairs."""
    return "[" + ", ".join(f"({name!r}, {path!r})" for name, path in pairs) + "]"

def read_instances(path: str | Path) -> list[Instance]:
    """The lines of an ``instances.csv`` (paths relative to its folder), checked: three
    fields, existing files, a positive timeout."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such instances.csv; give the benchmark's instances file")
    base = path.parent
    out = []
    with path.open(newline="") as f:
        for k, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise InputError(f"{path}:{k}: {len(row)} fields; each line is network,vnnlib,"
                                 "timeout (quote a network field that holds commas)")
            field, prop, timeout = (c.strip() for c in row)
            try:
                seconds = float(timeout)
            except ValueError:
                raise InputError(f"{path}:{k}: timeout {timeout!r} is not a number") from None
            if not seconds > 0:
                raise InputError(f"{path}:{k}: timeout must be positive, got {timeout}")
            try:
                nets = parse_network_field(field, base)
            except InputError as exc:
                raise InputError(f"{path}:{k}: {exc}") from None
            vnnlib = base / prop
            if not vnnlib.is_file():
                raise InputError(f"{path}:{k}: property {vnnlib} does not exist")
            out.append(Instance(nets, vnnlib, seconds, field, k, prop))
    if not out:
        raise InputError(f"{path}: no instances; each line is network,vnnlib,timeout")
    return out

def write_instances(path: Path, rows: list[tuple[str, str, float]]) -> None:
    """``instances.csv`` lines ``network,vnnlib,timeout`` (fields with commas quoted)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for field, prop, timeout in rows:
            writer.writerow([field, prop, f"{timeout:g}"])


def find_base(field: str, vnnlib_path: Path) -> Path | None:
    """Where a network field's relative paths are: the current folder, else the VNN-LIB
    file's folder or one above it (a benchmark folder holds onnx/ and vnnlib/ side by side)."""
    for base in (Path.cwd(), *vnnlib_path.resolve().parents):
        try:
            parse_network_field(field, base)
        except NnbisimError:
            continue
        return base
    return None
