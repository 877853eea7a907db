"""A first look at an ONNX file without loading the ``onnx`` package: is it a readable model,
and how many values do its input and output hold.

The command line refuses bad files with this before anything heavy loads (``import onnx``
alone takes about a second, most of it in ml_dtypes). The message classes are onnx's own
generated ones (``onnx_ml_pb2.py``, which needs only protobuf), loaded from onnx's folder
under a private name; where that file is missing, onnx itself is imported instead.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np

from nnbisim.core.errors import InputError

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


def peek(path: str | Path) -> Peek:
    """The file's real inputs and outputs; :class:`InputError` for a file that is not an ONNX
    model."""
    path = Path(path)
    model = _protos().ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}); check the path") from None
    except Exception as exc:  # protobuf's DecodeError and the like: not a model
        raise InputError(NOT_ONNX.format(path=path, why=type(exc).__name__)) from None
    if not model.graph.node or not model.graph.output:
        raise InputError(NOT_ONNX.format(path=path, why="no graph"))
    inits = {t.name for t in model.graph.initializer}
    return Peek(tuple(_size(i) for i in model.graph.input if i.name not in inits),
                tuple(_size(o) for o in model.graph.output))
