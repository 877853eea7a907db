"""VNN-COMP formats, the two-network bridge, nnbisim as a tool and any tool as a verifier."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from netbuild import random_network, save

from nnbisim.adapters.compress import round_weights
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.errors import InputError, SpecError
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.specs.discrepancy import (
    infinity_norm_property,
    two_network_infinity_norm_query,
)
from nnbisim.specs.io import read_spec
from nnbisim.specs.results import assignment_2_0, counterexample_1_0, parse_vnncomp_result
from nnbisim.specs.sets import Box, InputSet
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_two_network_query
from nnbisim.verifiers.registry import get_verifier
from nnbisim.vnncomp.bridge import back_translate, translate
from nnbisim.vnncomp.formats import format_network_field, parse_network_field, read_instances
from nnbisim.vnncomp.run import run_instance

TOOL = Path(__file__).resolve().parents[2] / "vnncomp"
BOX = Box([-1.0, -1.0], [1.0, 1.0])


@pytest.fixture()
def folder(tmp_path):
    """A small benchmark folder: N1, a perturbed float16 copy N2, and the sampled max |N1-N2|."""
    rng = np.random.default_rng(0)
    n1 = random_network([2, 10, 10, 2], rng)
    n2 = round_weights(Network.from_weights([layer.weight * 1.02 for layer in n1.layers],
                                            [layer.bias for layer in n1.layers]))
    (tmp_path / "onnx").mkdir()
    (tmp_path / "vnnlib").mkdir()
    save(network_to_model(n1), tmp_path / "onnx" / "a.onnx")
    save(network_to_model(n2), tmp_path / "onnx" / "b.onnx")
    x = BOX.sample(100000, rng)
    top = float(np.abs(n1.forward(x) - n2.forward(x)).max())
    return tmp_path, n1, n2, top


def query_file(path: Path, eps: float) -> Path:
    q = two_network_infinity_norm_query(InputSet.of(BOX), 2, eps)
    write_two_network_query(q, (1, 2), (1, 2), path)
    return path


FIELD = "[('f', 'onnx/a.onnx'), ('g', 'onnx/b.onnx')]"


def test_network_fields(folder):
    base = folder[0]
    assert parse_network_field("onnx/a.onnx", base) == (("N", base / "onnx" / "a.onnx"),)
    pairs = parse_network_field(FIELD, base)
    assert [n for n, _ in pairs] == ["f", "g"] and pairs[1][1] == base / "onnx" / "b.onnx"
    assert format_network_field([("f", "onnx/a.onnx"), ("g", "onnx/b.onnx")]) == FIELD
    for bad, match in (("[('f', 'onnx/a.onnx'", "Python list"),
                       ("[('f', 'onnx/a.onnx'), ('f', 'onnx/b.onnx')]", "twice"),
                       ("[('f', 1)]", "string pairs"), ("onnx/missing.onnx", "does not exist")):
        with pytest.raises(InputError, match=match):
            parse_network_field(bad, base)


def test_malformed_instances_csv_is_refused(folder):
    base = folder[0]
    prop = query_file(base / "vnnlib" / "q.vnnlib", 0.1)
    good = base / "instances.csv"
    good.write_text(f'"{FIELD}",vnnlib/{prop.name},30\n')
    (inst,) = read_instances(good)
    assert inst.timeout == 30 and len(inst.networks) == 2
    for text, match in ((f"onnx/a.onnx,vnnlib/{prop.name}\n", "2 fields"),
                        (f"onnx/a.onnx,vnnlib/{prop.name},soon\n", "not a number"),
                        ("onnx/a.onnx,vnnlib/nope.vnnlib,30\n", "does not exist"),
                        (f"onnx/x.onnx,vnnlib/{prop.name},30\n", "does not exist")):
        bad = base / "bad.csv"
        bad.write_text(text)
        with pytest.raises(InputError, match=match):
            read_instances(bad)


def test_counterexample_formats():
    text = counterexample_1_0(np.array([0.5, -1.0]), np.array([2.0]))
    assert text == "((X_0 0.5)\n (X_1 -1.0)\n (Y_0 2.0))\n"
    status, x, _ = parse_vnncomp_result("sat\n" + text)
    assert status is Status.VIOLATED and np.array_equal(x, [0.5, -1.0])
    two = assignment_2_0([("X_f", "float32", (1, 2), np.array([1.0, 2.0])),
                          ("Y_f", "float32", (1,), np.array([3.0]))])
    assert two == "X_f float32 [1,2]\n1.0\n2.0\nY_f float32 [1]\n3.0\n"
    with pytest.raises(SpecError, match="shape"):
        assignment_2_0([("X", "float32", (3,), np.array([1.0]))])


def _parse_assignment(text: str) -> dict[str, np.ndarray]:
    out, name = {}, None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("["):
            name = parts[0]
            out[name] = []
        elif line.strip():
            out[name].append(float(line))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.marabou
def test_translate_loads_everywhere_and_back_translates(folder):
    base, n1, n2, top = folder
    query = query_file(base / "vnnlib" / "q.vnnlib", 0.5 * top)
    tr = translate(FIELD, query, base / "tr", base=base)
    prop = read_spec(tr.vnnlib1)
    assert prop.n_outputs == 6 and all(p.mat.shape == (1, 6) for p in prop.unsafe.disjuncts)
    assert all(np.count_nonzero(p.mat) == 1 for p in prop.unsafe.disjuncts)  # on y1 - y2
    assert read_spec(tr.vnnlib2).n_outputs == 6
    with pytest.raises(Exception, match="overwrite"):
        translate(FIELD, query, base / "tr", base=base)
    marabou = get_verifier("marabou")
    # Marabou loads the translated files: one disjunct (output 0, sign +) at a time
    single = base / "tr" / "d0.vnnlib"
    write_vnnlib1(infinity_norm_property(InputSet.of(BOX), 6, 10 * top + 1, offset=4), single)
    assert marabou.check(tr.merged, single, 60).status is Status.HOLDS
    verdict = get_verifier("bounds").check(tr.merged, tr.vnnlib1, 30)
    assert verdict.status is Status.VIOLATED
    values = _parse_assignment(back_translate(tr.manifest, verdict.counterexample))
    assert list(values) == ["X_f", "X_g", "Y_f", "Y_g"]
    assert np.array_equal(values["X_f"], values["X_g"])
    d = values["Y_f"] - values["Y_g"]
    assert np.abs(d).max() >= 0.5 * top * (1 - 1e-5)
    np.testing.assert_allclose(values["Y_f"], n1.forward(values["X_f"]), atol=1e-5)
    with pytest.raises(InputError, match="does not violate"):
        back_translate(tr.manifest, np.zeros(2) + 10.0)


def test_translate_refuses_what_it_cannot_express(folder, tmp_path):
    base = folder[0]
    single = base / "vnnlib" / "single.vnnlib"
    write_vnnlib1(infinity_norm_property(InputSet.of(BOX), 2, 0.1), single)
    with pytest.raises(InputError, match="single-network"):
        translate(FIELD, single, tmp_path / "o1", base=base)
    query = query_file(base / "vnnlib" / "q.vnnlib", 0.1)
    with pytest.raises(InputError, match="names"):
        translate("[('a', 'onnx/a.onnx'), ('b', 'onnx/b.onnx')]", query, tmp_path / "o2",
                  base=base)
    loose = query.read_text().replace("(assert (== X_f[0,1] X_g[0,1]))",
                                      "(assert (<= X_f[0,1] X_g[0,1]))")
    (tmp_path / "loose.vnnlib").write_text(loose)
    with pytest.raises(SpecError, match=r"X_g\[0,1\] is not bounded|X_g\[1\] is not bounded"):
        translate(FIELD, tmp_path / "loose.vnnlib", tmp_path / "o3", base=base)


@pytest.mark.parametrize("side", ["sat", "unsat"])
def test_run_instance_answers_both_versions(folder, side):
    base, n1, n2, top = folder
    eps = 0.5 * top if side == "sat" else 3 * top + 1e-3
    query = query_file(base / "vnnlib" / f"q_{side}.vnnlib", eps)
    result = base / f"r2_{side}.txt"
    assert run_instance(FIELD, query, result, 30, base=base).vnncomp == side
    text = result.read_text()
    if side == "sat":
        values = _parse_assignment(text.split("\n", 1)[1])
        assert np.abs(values["Y_f"] - values["Y_g"]).max() >= eps * (1 - 1e-5)
    tr = translate(FIELD, query, base / f"tr_{side}", base=base)
    result1 = base / f"r1_{side}.txt"
    assert run_instance(str(tr.merged), tr.vnnlib1, result1, 30).vnncomp == side
    status, x, _ = parse_vnncomp_result(result1.read_text())
    if side == "sat":
        assert status is Status.VIOLATED and BOX.contains(x)


@pytest.mark.parametrize("side", ["sat", "unsat"])
def test_own_scripts_as_a_verifier_plug_in(folder, side, monkeypatch):
    """The vnncomp:DIR plug-in driving nnbisim's own run_instance.sh on a merged instance."""
    base, n1, n2, top = folder
    eps = 0.5 * top if side == "sat" else 3 * top + 1e-3
    tr = translate(FIELD, query_file(base / "vnnlib" / "q.vnnlib", eps), base / "tr", base=base)
    monkeypatch.setenv("NNBISIM_PYTHON", sys.executable)
    verdict = get_verifier(f"vnncomp:{TOOL}").check(tr.merged, tr.vnnlib1, 30)
    assert verdict.status is (Status.VIOLATED if side == "sat" else Status.HOLDS), verdict.message


def test_scripts_refuse_bad_arguments(tmp_path):
    import subprocess

    env = {**os.environ, "NNBISIM_PYTHON": sys.executable}
    out = subprocess.run(["bash", str(TOOL / "run_instance.sh"), "v2", "c", "n", "p", "r", "1"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "usage" in out.stderr
    out = subprocess.run(["bash", str(TOOL / "prepare_instance.sh"), "v1", "c", "n",
                          str(tmp_path / "none.vnnlib")], capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "no such VNN-LIB" in out.stderr


def test_the_own_engine_gets_the_time_marabou_could_not_use():
    """With 20 s and 10 disjuncts Marabou's 40% (7 s after writing) cannot give each query its
    1.5 s, so the own engine gets all but the writing margin; with 2 disjuncts it keeps 60%."""
    from nnbisim.verifiers.queries import MIN_QUERY
    from nnbisim.vnncomp.run import OWN_SHARE, WRITE_MARGIN, own_budget

    assert own_budget(20.0, 10) == pytest.approx(20.0 - WRITE_MARGIN)
    assert own_budget(20.0, 2) == pytest.approx(OWN_SHARE * 20.0)
    rest = (1 - OWN_SHARE) * 20.0 - WRITE_MARGIN
    assert own_budget(20.0, int(rest // MIN_QUERY)) == pytest.approx(OWN_SHARE * 20.0)
    assert own_budget(20.0, int(rest // MIN_QUERY) + 1) == pytest.approx(20.0 - WRITE_MARGIN)
    assert own_budget(0.5, 1) == 0.0


def test_a_two_network_query_leaves_marabou_a_tenth_at_most():
    """At VNN-COMP 2026's 100 s, a pair query's 10 disjuncts would get 9 s from a 10% share,
    under 1.5 s each: the own engine gets all but the writing margin; with 2 disjuncts 90%."""
    from nnbisim.vnncomp.run import PAIR_OWN_SHARE, WRITE_MARGIN, own_budget

    assert own_budget(100.0, 10, PAIR_OWN_SHARE) == pytest.approx(100.0 - WRITE_MARGIN)
    assert own_budget(100.0, 2, PAIR_OWN_SHARE) == pytest.approx(PAIR_OWN_SHARE * 100.0)
