"""A small generated ACAS Xu equivalence benchmark: layout, reproducibility, known answers."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import acas_net

from nnbisim.core.errors import InputError
from nnbisim.specs.io import read_spec, read_spec_cases
from nnbisim.verifiers.queries import marabou_per_disjunct
from nnbisim.vnncomp.benchmark import acasxu_pairs, read_pairs, write_benchmark
from nnbisim.vnncomp.formats import read_instances
from nnbisim.vnncomp.run import run_instance


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = acas_net(1, 1).parent
    pairs = acasxu_pairs(data, root / "nets", ["1_1"], [3, 4], "float16")
    out = write_benchmark(pairs, root / "b", seed=0, timeout=20, eps_budget=5)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".vnnlib", ".csv", ".md")}


def test_layout_and_versions(bench):
    for name in ("instances.csv", "expected.csv", "README.md", "generate_properties.py",
                 "benchmark.json", "2.0/instances.csv", "2.0/expected.csv"):
        assert (bench / name).is_file(), name
    one, two = read_instances(bench / "instances.csv"), read_instances(bench / "2.0" /
                                                                        "instances.csv")
    assert len(one) == len(two) == 4
    assert all(len(i.networks) == 1 for i in one) and all(len(i.networks) == 2 for i in two)
    for path in (bench / "expected.csv", bench / "2.0" / "expected.csv"):
        rows = list(csv.reader(path.open()))
        assert rows[0] == ["onnx", "vnnlib", "expected"]
        assert sorted(r[2] for r in rows[1:]) == ["sat", "sat", "unsat", "unsat"]
    for inst in two:  # the 2.0 files parse with the vnnlib package as two-network queries
        q = read_spec(inst.vnnlib)
        assert q.first == "f" and q.second == "g" and q.relation == "isomorphic-to"


def test_generate_properties_reproduces_byte_for_byte(bench, tmp_path):
    before = _files(bench)
    run = [sys.executable, str(bench / "generate_properties.py")]
    subprocess.run([*run, "1"], check=True, cwd=tmp_path)
    moved = _files(bench)
    assert moved != before
    subprocess.run([*run, "0"], check=True, cwd=tmp_path)
    assert _files(bench) == before
    bad = subprocess.run([*run, "x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "usage" in bad.stderr


def _expected(folder: Path) -> dict[str, str]:
    return {row[1]: row[2] for row in list(csv.reader((folder / "expected.csv").open()))[1:]}


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_nnbisim_confirms_the_known_answers(bench, version, tmp_path):
    folder = bench if version == "1.0" else bench / "2.0"
    expected = _expected(folder)
    for inst in read_instances(folder / "instances.csv"):
        rel = str(inst.vnnlib.relative_to(folder))
        word = run_instance(inst.field, inst.vnnlib, tmp_path / "r.txt", inst.timeout,
                            base=folder).vnncomp
        assert word in (expected[rel], "timeout", "unknown"), (rel, word)
        if expected[rel] == "sat":
            assert word == "sat", rel  # the witness is easy to find again


@pytest.mark.marabou
def test_marabou_never_contradicts_the_known_answers(bench, tmp_path):
    """Marabou on the merged 1.0 instances, one disjunct per query (on these 600-neuron
    comparison networks it mostly runs out of time: only a contradiction would fail)."""
    expected = _expected(bench)
    for inst in read_instances(bench / "instances.csv"):
        rel = str(inst.vnnlib.relative_to(bench))
        status, _ = marabou_per_disjunct(inst.networks[0][1], read_spec_cases(inst.vnnlib),
                                       inst.timeout, tmp_path)
        assert status.vnncomp in (expected[rel], "timeout", "unknown", "error"), (rel, status)


def test_bad_pairs_are_refused(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("a.onnx,b.onnx\n")
    with pytest.raises(InputError, match="2 fields"):
        read_pairs(bad)
    bad.write_text("a.onnx,b.onnx,r.vnnlib\n")
    with pytest.raises(InputError, match="does not exist"):
        read_pairs(bad)
    with pytest.raises(InputError, match="compression"):
        acasxu_pairs(acas_net(1, 1).parent, tmp_path, ["1_1"], [1], "zip")
