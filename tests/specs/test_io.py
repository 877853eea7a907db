"""read_spec: version sniffing, gzip, and refusing what is not a VNN-LIB file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nnbisim.core.errors import SpecError
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
