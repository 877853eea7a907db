"""A first look at an ONNX file without loading the ``onnx`` package: is it a readable model,
and how many values do its input and output hold.

The command line refuses bad files with this before anything heavy loads (``import onnx``
alone takes about a second, most of it in ml_dtypes). The message classes are onnx's own
generated ones (``onnx_ml_pb2.py``, which needs only protobuf), loaded from onnx's folder
under a private name; where that file is missing, onnx itself is imported instead.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

from nnbisim.adapters.onnx_tensors import FLOAT_TYPES, TYPE_NAMES, float_values
from nnbisim.core.errors import InputError
from nnbisim.core.limits import check_dense

NOT_ONNX = ("{path}: not a readable ONNX model ({why}); export it with torch.onnx.export or "
            "check the file is not truncated")


@cache
def _protos() -> ModuleType:
    spec = importlib.util.find_spec("onnx")
    generated = (Path(spec.origin).parent / "onnx_ml_pb2.py"
                 if spec is not None and spec.origin else None)
    if generated is None or not generated.is_file():
        return importlib.import_module("onnx")
    light = importlib.util.spec_from_file_location("_nnbisim_onnx_ml_pb2", generated)
    module = importlib.util.module_from_spec(light)
    light.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Peek:
    """The sizes of a model's one real input and its outputs (None where not declared)."""

    inputs: tuple[int | None, ...]
    outputs: tuple[int | None, ...]


def _size(info) -> int | None:
    dims = info.type.tensor_type.shape.dim
    if not info.type.tensor_type.HasField("shape"):
        return None
    return int(np.prod([d.dim_value if d.dim_value > 0 else 1 for d in dims]))


MAX_ONNX_BYTES = 4 * 2**30  # a model's bytes after decompression (protobuf's own limit: 2 GiB)


def onnx_bytes(path: str | Path) -> bytes:
    """The bytes of an ONNX file, decompressed when it is gzip'd (``.onnx.gz``, as VNN-COMP
    2026 ships its benchmarks); :class:`InputError` naming the file otherwise."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; give the path of an .onnx model") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give the path of an .onnx model") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(raw, MAX_ONNX_BYTES + 1)
    except zlib.error as exc:
        raise InputError(f"{path}: is not a readable gzip file ({exc}); decompress it and "
                         "check the content") from None
    if len(out) > MAX_ONNX_BYTES or not inflate.eof:
        why = "over 4 GiB decompressed" if len(out) > MAX_ONNX_BYTES else "it is truncated"
        raise InputError(f"{path}: cannot be decompressed ({why}); give the .onnx file")
    return out


def is_gzip(path: str | Path) -> bool:
    """Does the file start as gzip data does (False for a file that cannot be read)?"""
    try:
        with Path(path).open("rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def gunzipped(path: str | Path, folder: str | Path) -> Path:
    """``path`` itself, or for a gzip'd file its decompressed copy in ``folder`` (for tools
    that read plain files only, e.g. Marabou)."""
    path = Path(path)
    if not is_gzip(path):
        return path
    name = path.name[:-3] if path.name.endswith(".gz") else path.name + ".plain"
    out = Path(folder) / name
    with gzip.open(path, "rb") as src, out.open("wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return out


def parse_model(path: str | Path):
    """The model in a file (plain or gzip'd) as onnx's generated message classes, loaded
    without ``import onnx``; :class:`InputError` naming the file for bytes that are not a
    model."""
    model = _protos().ModelProto()
    try:
        model.ParseFromString(onnx_bytes(path))
    except Exception as exc:  # protobuf's DecodeError and the like: not a model
        raise InputError(NOT_ONNX.format(path=path, why=type(exc).__name__)) from None
    return model


def peek(path: str | Path) -> Peek:
    """The file's real inputs and outputs; :class:`InputError` for a file that is not an ONNX
    model."""
    path = Path(path)
    model = parse_model(path)
    if not model.graph.node or not model.graph.output:
        raise InputError(NOT_ONNX.format(path=path, why="no graph"))
    inits = {t.name for t in model.graph.initializer}
    found = Peek(tuple(_size(i) for i in model.graph.input if i.name not in inits),
                 tuple(_size(o) for o in model.graph.output))
    for i in model.graph.input:
        elem = i.type.tensor_type.elem_type
        if i.name not in inits and elem not in (0, *FLOAT_TYPES):
            raise InputError(f"{path}: its input '{i.name}' holds {TYPE_NAMES.get(elem, elem)} "
                             "values; nnbisim feeds real-valued inputs: give a network with a "
                             "float input")
    for what, sizes in (("input", found.inputs), ("output", found.outputs)):
        for n in sizes:
            if n is not None:
                check_dense(n, n, f"{path}: its {what}")
    check_finite(model, path)
    return found


def nonfinite_tensors(model) -> list[str]:
    """The float weights (initializers, Constant nodes) holding NaN or infinite values, as
    ``'name' (k of n)``."""
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(n.name or (n.output[0] if n.output else "?"), a.t) for n in model.graph.node
                if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    found = []
    for name, t in tensors:
        values = float_values(t)
        bad = 0 if values is None else int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            found.append(f"'{name}' ({bad} of {values.size} values)")
    return found


def check_finite(model, path: str | Path) -> None:
    """Refuse a model whose weights hold NaN or infinite values: no bound or witness over them
    means anything."""
    bad = nonfinite_tensors(model)
    if bad:
        more = f" and {len(bad) - 1} more weights" if len(bad) > 1 else ""
        raise InputError(f"{path}: NaN or infinite values in weight {bad[0]}{more}; nnbisim "
                         "needs finite weights: check the export or the training run that "
                         "wrote them")
