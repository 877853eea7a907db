"""read_spec: version sniffing, gzip, and refusing what is not a VNN-LIB file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nnbisim.core.errors import InputError, SpecError
from nnbisim.specs.discrepancy import two_network_violation_query
from nnbisim.specs.io import detect_version, read_spec, read_spec_cases
from nnbisim.specs.sets import Box, InputSet, Property, TwoNetworkQuery
from nnbisim.specs.vnnlib1 import read_property
from nnbisim.specs.vnnlib2 import write_two_network_query, write_vnnlib2


def test_detects_versions():
    commented = "; (vnnlib-version <2.0>) in a comment\n(declare-const X_0 Real)"
    assert detect_version(commented) == "1.0"
    assert detect_version("(vnnlib-version <2.0>)\n(declare-network f ...)") == "2.0"
    assert detect_version("(declare-network f (declare-input X float32 [1]))") == "2.0"
    with pytest.raises(SpecError, match="x.txt: is not a VNN-LIB file"):
        detect_version("hello", "x.txt")


def test_reads_both_versions_and_gzip(acas_dir, tmp_path):
    p1 = read_spec(acas_dir / "prop_6.vnnlib")
    assert isinstance(p1, Property) and len(p1.inputs.boxes) == 2
    v2 = tmp_path / "p6.vnnlib.gz"
    v2.write_bytes(gzip.compress(write_vnnlib2(p1, (1, 5), (1, 5)).encode()))
    p2 = read_spec(v2)
    assert isinstance(p2, Property) and p2.input_shape == (1, 5)
    for a, b in zip(p1.inputs.boxes, p2.inputs.boxes, strict=True):
        np.testing.assert_array_equal(a.lower, b.lower)
    assert len(read_spec_cases(v2)) == 2 and len(read_spec_cases(acas_dir / "prop_6.vnnlib")) == 2
    q = two_network_violation_query(InputSet.of(Box([0.0], [1.0])), 3, 1, -1, 0.5)
    path = tmp_path / "pair.vnnlib"
    write_two_network_query(q, (1,), (3,), path)
    back = read_spec(path)
    assert isinstance(back, TwoNetworkQuery) and back.n_outputs == 3


def test_gzip_written_by_the_writers(acas_dir, tmp_path):
    from nnbisim.specs.vnnlib1 import write_vnnlib1

    prop = read_property(acas_dir / "prop_1.vnnlib")
    path = tmp_path / "p.vnnlib.gz"
    write_vnnlib1(prop, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert read_spec(path).unsafe.disjuncts[0].rhs[0] == -3.991125645861615


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"  \n; only a comment\n", "is not a VNN-LIB file"),
    (b"\xff\xfe\x00binary", "is not UTF-8"),
    (b"\x1f\x8b\x08\x00broken", "is not a readable gzip file"),
    (b"(declare-const X_0 Real)\n(assert (<= X_0 1.0)", "never closed"),
    (b"(vnnlib-version <2.0>)\n(declare-network f (declare-input X float32 [1]) "
     b"(declare-output Y float32 [1]))\n(assert (<= X[0] 1e-3))", "not valid VNN-LIB 2.0"),
])
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.vnnlib"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=message) as err:
        read_spec(path)
    assert str(err.value).startswith(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        read_spec(tmp_path / "nope.vnnlib")
    with pytest.raises(SpecError, match="is a directory"):
        read_spec(tmp_path)


V1_HEAD = ("".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "(declare-const Y_0 Real)\n"
           + "".join(f"(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(2)))
V2_HEAD = ("(vnnlib-version <2.0>)\n(declare-network N (declare-input X Real [2]) "
           "(declare-output Y Real [1]))\n(assert (>= X[1] 0.0))\n(assert (<= X[1] 1.0))\n")


@pytest.mark.parametrize("text, line", [
    (V1_HEAD + "(assert (>= Y_0 nan))\n", "line 8: 'nan' is a NaN bound"),
    (V1_HEAD + "(assert (<= Y_0 (- NaN)))\n", "line 8: 'NaN' is a NaN bound"),
    (V1_HEAD + "(assert (<= Y_0 -inf))\n", "line 8: '-inf' is an infinite bound"),
    (V1_HEAD + "(assert (<= Y_0 1e999))\n", "line 8: '1e999' is out of the double range"),
    (V2_HEAD + "(assert (>= X[0] nan))\n(assert (<= X[0] 1.0))\n(assert (>= Y[0] 0.0))\n",
     "line 5: 'nan' is a NaN bound"),
])
def test_nan_and_infinite_bounds_are_named_as_such(tmp_path, text, line):
    path = tmp_path / "nan.vnnlib"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        read_spec(path)
    assert str(err.value).startswith(f"{path}: {line}"), str(err.value)
    assert "declare" not in str(err.value)


def test_deep_nesting_reads_without_recursion_in_1_0_and_is_refused_in_2_0(tmp_path):
    depth = 50_000  # far beyond Python's recursion limit
    nested = (V1_HEAD + "(assert " + "(and " * depth + "(>= Y_0 " + "(+ 1 " * depth + "0"
              + ")" * depth + ")" + ")" * depth + ")\n")
    path = tmp_path / "deep.vnnlib"
    path.write_text(nested)
    prop = read_spec(path)
    assert prop.unsafe.disjuncts[0].rhs[0] == -depth  # -Y_0 <= -depth
    deep2 = tmp_path / "deep2.vnnlib"  # the vnnlib package's parser would crash the process
    deep2.write_text(V2_HEAD + "(assert (<= X[0] 1.0))\n(assert (>= X[0] 0.0))\n(assert "
                     + "(and " * 60_000 + "(>= Y[0] 0.0)" + ")" * 60_000 + ")\n")
    with pytest.raises(SpecError, match="nests parentheses more than 10000 deep"):
        read_spec(deep2)


def test_decompression_and_size_are_bounded(tmp_path, monkeypatch):
    from nnbisim.specs import _text

    monkeypatch.setattr(_text, "MAX_TEXT_BYTES", 2**20)
    bomb = tmp_path / "bomb.vnnlib.gz"  # 4 MiB of zeros in a few KiB: stops at 1 MiB
    bomb.write_bytes(gzip.compress(b"\0" * 2**22))
    with pytest.raises(SpecError, match="over nnbisim's limit of 1 MiB") as err:
        read_spec(bomb)
    assert str(err.value).startswith(f"{bomb}: decompressed")
    big = tmp_path / "big.vnnlib"
    big.write_bytes(b" " * (2**20 + 1))
    with pytest.raises(SpecError, match="split the property into several files"):
        read_spec(big)
    two = tmp_path / "two.vnnlib.gz"  # two gzip members, as `cat a.gz b.gz` makes, still read
    two.write_bytes(gzip.compress(V1_HEAD.encode()) + gzip.compress(b"(assert (>= Y_0 1))\n"))
    assert read_spec(two).unsafe.disjuncts[0].rhs[0] == -1


def test_declared_sizes_beyond_the_memory_budget_are_refused_before_allocating(tmp_path):
    huge = tmp_path / "huge.vnnlib"  # 2.0 declares 1e8 inputs in one line
    huge.write_text("(vnnlib-version <2.0>)\n(declare-network N (declare-input X Real "
                    "[1,100000000]) (declare-output Y Real [1]))\n(assert (>= X[0,0] 0.0))\n"
                    "(assert (<= X[0,0] 1.0))\n(assert (>= Y[0] 0.0))\n")
    with pytest.raises(InputError, match=r"huge\.vnnlib: its declared input holds 100000000 "
                       r"values.*memory budget"):
        read_spec(huge)
    sparse = tmp_path / "sparse.vnnlib"  # 1.0 declares X_99999999 alone: no 1e8-element set
    sparse.write_text("(declare-const X_99999999 Real)\n(declare-const Y_0 Real)\n"
                      "(assert (<= X_99999999 1))\n(assert (>= Y_0 0))\n")
    with pytest.raises(SpecError, match="X_0 is not declared but X_99999999 is"):
        read_spec(sparse)
