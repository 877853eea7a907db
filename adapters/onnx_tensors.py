"""ONNX tensors and attributes as numpy values, without importing the ``onnx`` package.

``onnx.numpy_helper.to_array`` and ``onnx.helper.get_attribute_value`` cost ``import onnx``
(over a second, most of it ml_dtypes' start-up) on every command that reads a network. The
element types networks use are read here from the message fields directly: every one as
little-endian ``raw_data`` or as its typed field, as the ONNX standard stores them. The rare
others (strings, 8-bit floats, 4-bit integers) go to onnx's own helper.
"""

from __future__ import annotations

import numpy as np

# element type -> (its numpy dtype as stored in raw_data, the typed field holding it otherwise)
_LAYOUT = {
    1: ("<f4", "float_data"), 2: ("u1", "int32_data"), 3: ("i1", "int32_data"),
    4: ("<u2", "int32_data"), 5: ("<i2", "int32_data"), 6: ("<i4", "int32_data"),
    7: ("<i8", "int64_data"), 9: ("?", "int32_data"), 10: ("<f2", "int32_data"),
    11: ("<f8", "double_data"), 12: ("<u4", "uint64_data"), 13: ("<u8", "uint64_data"),
}
BFLOAT16 = 16  # the top half of a float32, read as float32
FLOAT_TYPES = (1, 10, 11, BFLOAT16)
TYPE_NAMES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
              8: "string", 9: "bool", 12: "uint32", 13: "uint64"}
EXTERNAL = 1  # TensorProto.data_location: the values live in another file


def _flat(t) -> np.ndarray:
    if t.data_type == BFLOAT16:
        bits = (np.frombuffer(t.raw_data, "<u2") if t.raw_data
                else np.asarray(t.int32_data, np.int64).astype(np.uint16))
        return (bits.astype(np.uint32) << 16).view(np.float32)
    dtype, field = _LAYOUT[t.data_type]
    if t.raw_data:
        return np.frombuffer(t.raw_data, dtype).copy()
    values = getattr(t, field)
    if t.data_type == 10:  # float16 bit patterns in int32_data
        return np.asarray(values, np.int64).astype(np.uint16).view(np.float16)
    return np.asarray(values, np.int64 if field == "int32_data" else None).astype(dtype)


def tensor_array(t) -> np.ndarray:
    """The values of a TensorProto (of ``onnx`` or of the light message classes), shaped by
    its dims, in the element type's numpy dtype (bfloat16 as float32)."""
    if t.data_type in _LAYOUT or t.data_type == BFLOAT16:
        return _flat(t).reshape(tuple(t.dims))
    import onnx

    proto = onnx.TensorProto.FromString(t.SerializeToString())
    return onnx.numpy_helper.to_array(proto)


def float_values(t) -> np.ndarray | None:
    """The flat values of a float tensor as stored (None for other element types or a raw
    buffer of the wrong length: onnx's own checks name that)."""
    if t.data_type not in FLOAT_TYPES:
        return None
    try:
        return _flat(t)
    except ValueError:
        return None


# AttributeProto.type -> how to read its value
_ATTRIBUTE = {1: lambda a: a.f, 2: lambda a: a.i, 3: lambda a: a.s, 4: lambda a: a.t,
              6: lambda a: list(a.floats), 7: lambda a: list(a.ints),
              8: lambda a: list(a.strings)}


def attribute_value(a):
    """An attribute's value as onnx.helper.get_attribute_value gives it for numbers, strings
    and tensors (None for graphs and other kinds, which no layer reading here uses)."""
    read = _ATTRIBUTE.get(a.type)
    return None if read is None else read(a)
