"""Writing the discrepancy properties of ``nnbisim spec``: which files, version and shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.adapters.merged_meta import merged_layout
from nnbisim.adapters.onnx_load import read_model, real_inputs, value_shape
from nnbisim.adapters.onnx_write import check_writable
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.specs import discrepancy
from nnbisim.specs.io import read_spec
from nnbisim.specs.sets import InputSet, OutputConstraint, Polytope, Property, TwoNetworkQuery
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_two_network_query, write_vnnlib2
from nnbisim.tasks.agree import disagreement


@dataclass(frozen=True)
class SpecRequest:
    """What ``nnbisim spec`` was asked for (see its ``--help``)."""

    inputs: InputSet
    eps: float
    out: Path
    index: int | None = None
    sign: str = "+"
    version: str = "1.0"
    model: Path | None = None
    pair: tuple[Path, Path] | None = None
    n_outputs: int | None = None
    source: Path | None = None
    force: bool = False
    agree: float | None = None  # top-1 agreement (where N1 leads by more than this) instead


@dataclass(frozen=True)
class _Target:
    n_outputs: int  # outputs of N1 (= number of differences)
    n_merged: int  # outputs of the network the property talks about
    offset: int  # index of the first difference among them
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def _io_shapes(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    model = read_model(path)
    ins = real_inputs(model)
    if len(ins) != 1 or len(model.graph.output) != 1:
        raise InputError(f"{path}: needs exactly one input and one output")
    return value_shape(ins[0]), value_shape(model.graph.output[0])


def _target(req: SpecRequest) -> _Target:
    if req.pair is not None:
        (s1, o1), (s2, o2) = _io_shapes(req.pair[0]), _io_shapes(req.pair[1])
        if int(np.prod(s1)) != int(np.prod(s2)) or int(np.prod(o1)) != int(np.prod(o2)):
            raise ShapeMismatchError(f"{req.pair[0]} and {req.pair[1]} differ in input or output "
                                     "size; a pair must have the same sizes")
        n = int(np.prod(o1))
        return _Target(n, n, 0, s1, o1)
    if req.model is not None:
        in_shape, out_shape = _io_shapes(req.model)
        layout = merged_layout(read_model(req.model))
        width = int(np.prod(out_shape))
        if layout is None or layout[0] == "diff":
            return _Target(width, width, 0, in_shape, out_shape)
        return _Target(layout[1], width, 2 * layout[1], in_shape, out_shape)
    n = req.n_outputs
    if n is None and req.source is not None:
        n = read_spec(req.source).n_outputs
    if n is None:
        raise InputError("cannot tell how many outputs the networks have: give --model M.onnx, "
                         "--pair N1.onnx N2.onnx, or --n-outputs K")
    return _Target(n, n, 0, (1, req.inputs.dim), (1, n))


def _write(req: SpecRequest, target: _Target, path: Path, index: int | None, sign: int) -> Path:
    path = check_writable(path, req.force)
    if req.pair is not None:
        if index is None:
            query = discrepancy.two_network_infinity_norm_query(req.inputs, target.n_outputs,
                                                                req.eps)
        else:
            query = discrepancy.two_network_violation_query(req.inputs, target.n_outputs, index,
                                                            sign, req.eps)
        write_two_network_query(query, target.input_shape, target.output_shape, path)
        return path
    if index is None:
        prop = discrepancy.infinity_norm_property(req.inputs, target.n_merged, req.eps,
                                                  offset=target.offset)
    else:
        prop = discrepancy.violation_property(req.inputs, target.n_merged, index, sign, req.eps,
                                              offset=target.offset)
    if req.version == "1.0":
        write_vnnlib1(prop, path)
    else:
        write_vnnlib2(prop, target.input_shape, target.output_shape, path)
    return path


def _write_agreement(req: SpecRequest, target: _Target) -> Path:
    """The top-1 disagreement (:func:`~nnbisim.tasks.agree.disagreement`) as one file: a
    two-network 2.0 query on the pair, or a property of a merged network with outputs
    ``[y1; y2; y1 - y2]``."""
    k = target.n_outputs
    unsafe = disagreement(k, req.agree or 0.0)
    path = check_writable(req.out, req.force)
    if req.pair is not None:
        write_two_network_query(TwoNetworkQuery(req.inputs, unsafe, k), target.input_shape,
                                target.output_shape, path)
        return path
    if target.n_merged != 3 * k or target.offset != 2 * k:
        raise InputError(f"{req.model}: top-1 agreement needs both networks' outputs; merge "
                         "the pair with --outputs all (or give --pair N1 N2 for VNN-LIB 2.0)")
    cols = np.zeros((2 * k, 3 * k))
    cols[:, :2 * k] = np.eye(2 * k)
    polys = tuple(Polytope(p.mat @ cols, p.rhs, p.strict) for p in unsafe.disjuncts)
    prop = Property(req.inputs, OutputConstraint(polys), 3 * k)
    if req.version == "1.0":
        write_vnnlib1(prop, path, comment="top-1 disagreement: Y_0..Y_k-1 = N1, Y_k..Y_2k-1 "
                      "= N2; strict relations written closed (VNN-LIB 1.0)")
    else:
        write_vnnlib2(prop, target.input_shape, target.output_shape, path)
    return path


def write_spec_files(req: SpecRequest) -> list[Path]:
    """Write one property file (``index`` given, or ``agree``) or a folder of them; return the
    paths."""
    if req.pair is not None and req.version != "2.0":
        raise InputError("two-network queries exist only in VNN-LIB 2.0; add "
                         "--vnnlib-version 2.0 (or merge the pair and use --model)")
    target = _target(req)
    in_size = int(np.prod(target.input_shape))
    if req.inputs.dim != in_size:
        raise ShapeMismatchError(f"the input set has {req.inputs.dim} values but the network "
                                 f"takes {in_size}; give one bound per input")
    if req.agree is not None:
        return [_write_agreement(req, target)]
    sign = {"+": 1, "-": -1}[req.sign]
    if req.index is not None:
        if not 0 <= req.index < target.n_outputs:
            raise InputError(f"--output {req.index} is out of range: the networks have "
                             f"{target.n_outputs} outputs (0..{target.n_outputs - 1})")
        return [_write(req, target, req.out, req.index, sign)]
    if req.out.exists() and not req.out.is_dir():
        raise InputError(f"{req.out}: is a file; without --output, -o names a directory")
    written = []
    for i in range(target.n_outputs):
        for s, tag in ((1, "pos"), (-1, "neg")):
            written.append(_write(req, target, req.out / f"diff_{i}_{tag}.vnnlib", i, s))
    written.append(_write(req, target, req.out / "diff_inf.vnnlib", None, 1))
    return written
