"""The graph form of the merge: both ONNX graphs side by side on one input, joined by Sub.

Works for any operators onnxruntime runs (convolutions, pooling, ...), at the price of a graph
that only verifiers taking general ONNX graphs accept. Names are prefixed ``n1_`` / ``n2_``; the
shared input takes N1's input shape and is reshaped to N2's when the shapes differ; both outputs
are flattened to ``(1, m)`` before the subtraction.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import compose, helper, numpy_helper, version_converter

from nnbisim.adapters.onnx_load import real_inputs, value_shape
from nnbisim.core.errors import ShapeMismatchError, UnsupportedModelError

MIN_OPSET = 13


def _default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1)


def _prepared(model: onnx.ModelProto, opset: int, prefix: str, source: str) -> onnx.ModelProto:
    """A copy with initializers removed from the inputs, converted to ``opset``, prefixed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if _default_opset(model) != opset:
        try:
            model = version_converter.convert_version(model, opset)
        except Exception as exc:
            raise UnsupportedModelError(
                f"{source}: cannot convert from opset {_default_opset(model)} to {opset} "
                f"({exc}); re-export it at opset {opset}") from exc
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)
    model = onnx.shape_inference.infer_shapes(model)
    return compose.add_prefix(model, prefix)


def _out_size(model: onnx.ModelProto, source: str) -> int:
    if len(model.graph.output) != 1:
        raise UnsupportedModelError(f"{source}: has {len(model.graph.output)} outputs; "
                                    "nnbisim compares models with one output")
    info = model.graph.output[0]
    dims = info.type.tensor_type.shape.dim
    if not dims or not all(d.HasField("dim_value") or d.HasField("dim_param") for d in dims):
        raise UnsupportedModelError(f"{source}: the output shape is not declared; give the "
                                    "output a static shape when exporting")
    return int(np.prod(value_shape(info)))


def _inputs(m1: onnx.ModelProto, m2: onnx.ModelProto, sources: tuple[str, str]
            ) -> list[onnx.ValueInfoProto]:
    """The one real input of each model; both of the same size."""
    ins = []
    for model, src in zip((m1, m2), sources, strict=True):
        real = real_inputs(model)
        if len(real) != 1:
            raise UnsupportedModelError(f"{src}: has {len(real)} inputs; nnbisim needs one")
        ins.append(real[0])
    s1, s2 = value_shape(ins[0]), value_shape(ins[1])
    if int(np.prod(s1)) != int(np.prod(s2)):
        raise ShapeMismatchError(
            f"{sources[0]} takes input {s1} ({int(np.prod(s1))} values) but {sources[1]} takes "
            f"{s2} ({int(np.prod(s2))} values); both must read inputs of the same size")
    return ins


def _joined(gs: tuple[onnx.ModelProto, onnx.ModelProto], ins: list[onnx.ValueInfoProto],
            outputs: str) -> tuple[list[onnx.NodeProto], int]:
    """Both graphs fed the one input (cast and reshaped to each one's own) and compared: the
    nodes and the output width."""
    in_type = ins[0].type.tensor_type.elem_type
    nodes: list[onnx.NodeProto] = []
    for i, (g, info) in enumerate(zip(gs, ins, strict=True), start=1):
        src = "input"
        if info.type.tensor_type.elem_type != in_type:
            nodes.append(helper.make_node("Cast", [src], [f"cast_in_{i}"],
                                          to=info.type.tensor_type.elem_type))
            src = f"cast_in_{i}"
        nodes.append(helper.make_node("Reshape", [src, f"shape_{i}"], [g.graph.input[0].name],
                                      name=f"feed_n{i}"))
    nodes += list(gs[0].graph.node) + list(gs[1].graph.node)
    out_type = gs[0].graph.output[0].type.tensor_type.elem_type
    flat = []
    for i, g in enumerate(gs, start=1):
        src = g.graph.output[0].name
        if g.graph.output[0].type.tensor_type.elem_type != out_type:
            nodes.append(helper.make_node("Cast", [src], [f"cast_out_{i}"], to=out_type))
            src = f"cast_out_{i}"
        nodes.append(helper.make_node("Reshape", [src, "shape_0"], [f"y{i}"], name=f"flat_y{i}"))
        flat.append(f"y{i}")
    if outputs == "diff":
        nodes.append(helper.make_node("Sub", flat, ["output"], name="compare"))
        return nodes, 1
    nodes.append(helper.make_node("Sub", flat, ["diff"], name="compare"))
    nodes.append(helper.make_node("Concat", [*flat, "diff"], ["output"], axis=1))
    return nodes, 3


def merge_graphs(m1: onnx.ModelProto, m2: onnx.ModelProto, outputs: str = "diff",
                 sources: tuple[str, str] = ("N1", "N2")) -> onnx.ModelProto:
    """Join two ONNX models into one whose output is ``y1 - y2`` (or ``[y1, y2, y1 - y2]``)."""
    ins = _inputs(m1, m2, sources)
    opset = max(_default_opset(m1), _default_opset(m2), MIN_OPSET)
    g1 = _prepared(m1, opset, "n1_", sources[0])
    g2 = _prepared(m2, opset, "n2_", sources[1])
    k1, k2 = _out_size(g1, sources[0]), _out_size(g2, sources[1])
    if k1 != k2:
        raise ShapeMismatchError(f"{sources[0]} gives {k1} outputs but {sources[1]} gives {k2}; "
                                 "both must have the same outputs to be compared")
    s1, s2 = value_shape(ins[0]), value_shape(ins[1])
    inits = [numpy_helper.from_array(np.array(s, np.int64), f"shape_{i}")
             for i, s in ((1, s1), (2, s2), (0, (1, k1)))]
    nodes, copies = _joined((g1, g2), ins, outputs)
    graph = helper.make_graph(
        nodes, "nnbisim_graph_merge",
        [helper.make_tensor_value_info("input", ins[0].type.tensor_type.elem_type, list(s1))],
        [helper.make_tensor_value_info("output", g1.graph.output[0].type.tensor_type.elem_type,
                                       [1, copies * k1])],
        initializer=inits + list(g1.graph.initializer) + list(g2.graph.initializer),
    )
    imports = {o.domain: o.version for o in [*g1.opset_import, *g2.opset_import]}
    imports[""] = opset
    imports.pop("ai.onnx", None)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()],
        producer_name="nnbisim")
    model.ir_version = max(g1.ir_version, g2.ir_version, 7)
    onnx.checker.check_model(model)
    return model
