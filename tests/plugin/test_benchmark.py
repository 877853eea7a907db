"""A small generated ACAS Xu equivalence benchmark: layout, reproducibility, known answers."""

from __future__ import annotations

import ast
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import acas_net
from netbuild import random_network, save

from nnbisim.adapters.compress import round_weights
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.specs.discrepancy import infinity_norm_property, two_network_infinity_norm_query
from nnbisim.specs.io import read_spec, read_spec_cases
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_two_network_query
from nnbisim.verifiers.queries import marabou_per_disjunct
from nnbisim.vnncomp import generate_properties as generator
from nnbisim.vnncomp.benchmark import Pair, acasxu_pairs, read_pairs, write_benchmark
from nnbisim.vnncomp.formats import format_network_field, read_instances
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


def _numpy_only_python(tmp: Path) -> tuple[list[str], dict[str, str]]:
    """A Python whose sys.path holds the standard library and numpy, not nnbisim: this
    interpreter with -S (no site-packages, so no editable nnbisim; -I would keep them) and
    PYTHONPATH a folder that links numpy alone."""
    site = Path(np.__file__).resolve().parents[1]
    lib = tmp / "numpy-only"
    lib.mkdir()
    for name in ("numpy", "numpy.libs"):  # numpy.libs: the wheel's bundled BLAS, if any
        if (site / name).exists():
            (lib / name).symlink_to(site / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return [sys.executable, "-S", "-s"], {**env, "PYTHONPATH": str(lib)}


def _shipped(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _small_pair(folder: Path) -> Pair:
    """A 3-10-10-2 network, its perturbed float16 copy and a region of two boxes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    n1 = random_network([3, 10, 10, 2], rng)
    n2 = round_weights(Network.from_weights([layer.weight * 1.02 for layer in n1.layers],
                                            [layer.bias for layer in n1.layers]))
    save(network_to_model(n1), folder / "a.onnx")
    save(network_to_model(n2), folder / "b.onnx")
    region = InputSet.of(Box([-1.0] * 3, [1.0] * 3), Box([2.0] * 3, [3.0] * 3))
    write_vnnlib1(infinity_norm_property(region, 6, 1.0, offset=4), folder / "r.vnnlib")
    return Pair(folder / "a.onnx", folder / "b.onnx", folder / "r.vnnlib")


def test_the_folder_moves_and_regenerates_with_python_and_numpy_only(tmp_path_factory):
    written = tmp_path_factory.mktemp("written")
    original = write_benchmark([_small_pair(written / "nets")], written / "b", seed=7,
                               timeout=20, eps_budget=2)
    moved = tmp_path_factory.mktemp("elsewhere") / "bench"
    shutil.copytree(original, moved)
    shutil.rmtree(written)  # the original folder and the source networks
    shipped = _shipped(moved)
    for name, data in shipped.items():  # no absolute path of where it was made
        assert str(written).encode() not in data, name
    info = json.loads(shipped["benchmark.json"])
    assert info["seed"] == 7
    for rec in info["pairs"]:
        assert rec["source"] == ["a.onnx", "b.onnx", "r.vnnlib"]
        for key in ("n1", "n2", "merged"):
            assert (moved / "onnx" / rec[key]).is_file()
    for gone in ("vnnlib", "2.0/vnnlib"):
        shutil.rmtree(moved / gone)
    for gone in ("instances.csv", "expected.csv", "2.0/instances.csv", "2.0/expected.csv",
                 "README.md"):
        (moved / gone).unlink()
    python, env = _numpy_only_python(tmp_path_factory.mktemp("py"))
    probe = subprocess.run([*python, "-c", "import nnbisim"], cwd=moved, env=env,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'nnbisim'" in probe.stderr
    subprocess.run([*python, "-c", "import numpy"], cwd=moved, env=env, check=True)
    subprocess.run([*python, "generate_properties.py", "7"], cwd=moved, env=env, check=True)
    assert _shipped(moved) == shipped
    for inst in read_instances(moved / "2.0" / "instances.csv"):
        assert len(read_spec(inst.vnnlib).inputs.boxes) == 2
    subprocess.run([*python, "generate_properties.py", "8"], cwd=moved, env=env, check=True)
    assert _shipped(moved) != shipped
    subprocess.run([*python, "generate_properties.py", "7"], cwd=moved, env=env, check=True)
    assert _shipped(moved) == shipped


def test_the_script_is_the_module_and_imports_the_standard_library_and_numpy_only(bench):
    script = bench / "generate_properties.py"
    assert script.read_bytes() == Path(generator.__file__).read_bytes()
    assert os.access(script, os.X_OK)
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for node in ast.walk(ast.parse(script.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            assert name.split(".")[0] in allowed, name
    info = json.loads((bench / "benchmark.json").read_text())
    assert all("/" not in s for rec in info["pairs"] for s in rec["source"])


def _record(boxes: list[Box], shape: list[int], m: int, relation: str | None) -> dict:
    return {"pair": 3, "region": "r.vnnlib", "lower": [b.lower.tolist() for b in boxes],
            "upper": [b.upper.tolist() for b in boxes], "input_shape": shape, "n_outputs": m,
            "relation": relation, "witnessed": 0.25, "certified": 0.3}


def test_the_script_writes_what_the_nnbisim_writers_write(bench):
    """The script's own VNN-LIB writers against nnbisim.specs on the benchmark's instances and
    on a record with two boxes, no relation, a 3-d input and extreme numbers."""
    info = json.loads((bench / "benchmark.json").read_text())
    odd = [Box([-1e20, 0.0, -0.0], [1e-300, 2.5, 1e22]), Box([-3.0, -2.0, -1.0], [3.0, 2.0, 1.0])]
    cases = [(inst["rec"], inst["eps"]) for inst in generator.instances(info, 0)]
    cases += [(_record(odd, [1, 1, 3], 2, None), 1.5e-7), (_record(odd[:1], [3], 1, None), 2e21)]
    for rec, eps in cases:
        m = rec["n_outputs"]
        inputs = InputSet(tuple(Box(lo, hi) for lo, hi in zip(rec["lower"], rec["upper"],
                                                             strict=True)))
        note = f"pair {rec['pair']}: note"
        one = write_vnnlib1(infinity_norm_property(inputs, 3 * m, eps, offset=2 * m),
                            comment=note)
        assert generator.vnnlib1_text(rec, eps, note) == one
        query = two_network_infinity_norm_query(inputs, m, eps, relation=rec["relation"])
        two = write_two_network_query(query, rec["input_shape"], [1, m])
        assert generator.vnnlib2_text(rec, eps) == two
    pairs = [("f", "onnx/a b.onnx"), ("g", "onnx/it's.onnx")]
    assert generator.network_field(pairs) == format_network_field(pairs)


def test_gzip_files_and_weight_first_networks_keep_the_known_answers(tmp_path):
    # the 2026 layout: .onnx.gz, .vnnlib.gz, networks with input [5] and MatMul(W, x)
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.vnncomp.benchmark import FileForm

    data = acas_net(1, 1).parent
    pairs = acasxu_pairs(data, tmp_path / "nets", ["1_1"], [3], "float16")
    out = write_benchmark(pairs, tmp_path / "b", seed=0, timeout=20, eps_budget=5,
                          files=FileForm(gzip=True, form="matmul-1d"))
    info = json.loads((out / "benchmark.json").read_text())
    assert info["gzip"] and info["pairs"][0]["input_shape"] == [5]
    packed = sorted(p.name for p in (out / "2.0" / "onnx").iterdir())
    assert all(n.endswith(".onnx.gz") for n in packed)
    assert load_network(out / "2.0" / "onnx" / packed[0]).input_shape == (5,)
    for folder in (out, out / "2.0"):
        expected = {row[1]: row[2] for row in
                    list(csv.reader((folder / "expected.csv").open()))[1:]}
        assert all(k.endswith(".vnnlib.gz") for k in expected)
        for inst in read_instances(folder / "instances.csv"):
            rel = str(inst.vnnlib.relative_to(folder))
            word = run_instance(inst.field, inst.vnnlib, tmp_path / "r.txt", inst.timeout,
                                base=folder).vnncomp
            assert word in (expected[rel], "timeout", "unknown"), (rel, word)
    before = {p: p.read_bytes() for p in sorted((out / "2.0" / "vnnlib").iterdir())}
    subprocess.run([sys.executable, str(out / "generate_properties.py"), "0"], check=True,
                   cwd=tmp_path)
    assert {p: p.read_bytes() for p in sorted((out / "2.0" / "vnnlib").iterdir())} == before


def test_top1_instances_have_their_known_answers(tmp_path):
    # delta-top-1: sat below the lead of a replayed disagreement, unsat above a proved delta
    from nnbisim.specs.sets import TwoNetworkQuery
    from nnbisim.vnncomp.benchmark import FileForm

    data = acas_net(1, 1).parent
    pairs = acasxu_pairs(data, tmp_path / "nets", ["1_1"], [3], "float16")
    out = write_benchmark(pairs, tmp_path / "b", seed=0, timeout=30, eps_budget=40,
                          files=FileForm(question="top1"))
    rec = json.loads((out / "benchmark.json").read_text())["pairs"][0]
    assert 0 < rec["lead_witnessed"] < rec["delta_proved"]
    for folder in (out, out / "2.0"):
        expected = _expected(folder)
        assert sorted(expected.values()) == ["sat", "unsat"]
        for inst in read_instances(folder / "instances.csv"):
            rel = str(inst.vnnlib.relative_to(folder))
            if folder != out:
                q = read_spec(inst.vnnlib)
                assert isinstance(q, TwoNetworkQuery) and len(q.unsafe.disjuncts) == 20
                assert q.unsafe.disjuncts[0].strict == (True,) * 5
            word = run_instance(inst.field, inst.vnnlib, tmp_path / "r.txt", inst.timeout,
                                base=folder).vnncomp
            assert word in (expected[rel], "timeout", "unknown"), (rel, word)
            if expected[rel] == "sat":
                assert word == "sat", rel
    before = _files(out)
    subprocess.run([sys.executable, str(out / "generate_properties.py"), "0"], check=True,
                   cwd=tmp_path)
    assert _files(out) == before
