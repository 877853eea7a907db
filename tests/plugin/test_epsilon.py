"""`nnbisim epsilon` on pairs with known answers, and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from netbuild import random_network, save

from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.cli.main import main
from nnbisim.core.model import Network
from nnbisim.specs.sets import Box, InputSet
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions

# the searches stop on their gap or work limit (boxes bounded, the same on any machine); the
# time budget is only a safety net that a loaded machine never reaches
SAFETY = 300.0


def dyadic(sizes, rng) -> Network:
    ws = [rng.integers(-4, 5, size=(o, i)) / 8 for i, o in zip(sizes[:-1], sizes[1:],
                                                                strict=True)]
    bs = [rng.integers(-4, 5, size=o) / 8 for o in sizes[1:]]
    return Network.from_weights(ws, bs)


def shifted(net: Network, shift) -> Network:
    bs = [layer.bias for layer in net.layers]
    bs[-1] = bs[-1] - np.asarray(shift)
    return Network.from_weights([layer.weight for layer in net.layers], bs, net.input_shape)


@pytest.fixture()
def pair(tmp_path):
    rng = np.random.default_rng(0)
    n1 = dyadic([3, 8, 8, 2], rng)
    p1 = save(network_to_model(n1), tmp_path / "n1.onnx")
    p2 = save(network_to_model(shifted(n1, [0.5, -0.25])), tmp_path / "n2.onnx")
    return n1, p1, p2


def test_identical_networks_give_zero(tmp_path, pair):
    _, p1, _ = pair
    rep = compute_epsilon(p1, p1, InputSet.of(Box(-np.ones(3), np.ones(3))),
                          options=EpsilonOptions(verifier="bounds", time_budget=SAFETY,
                                                 max_boxes=1000))
    assert rep.witnessed == 0.0 and 0.0 <= rep.certified <= 1e-9


def test_shifted_output_bias_gives_exactly_the_shift(pair):
    _, p1, p2 = pair
    rep = compute_epsilon(p1, p2, InputSet.of(Box(-np.ones(3), np.ones(3))),
                          options=EpsilonOptions(verifier="bounds", time_budget=SAFETY,
                                                 max_boxes=1000))
    assert rep.witnessed == pytest.approx(0.5, abs=1e-7)
    assert 0.5 <= rep.certified <= 0.5 + 1e-7
    o0, o1 = rep.outputs
    assert o0.min_certified <= 0.5 <= o0.max_certified
    assert o1.max_witnessed == pytest.approx(-0.25, abs=1e-7)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_pairs_certified_covers_the_dense_maximum(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n1, n2 = random_network([2, 20, 20, 3], rng), random_network([2, 8, 3], rng)
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    box = Box([-1.0, 0.0], [0.0, 1.0])
    rep = compute_epsilon(p1, p2, InputSet.of(box),
                          options=EpsilonOptions(verifier="bounds", time_budget=SAFETY,
                                                 max_boxes=5000))
    g = np.stack(np.meshgrid(np.linspace(-1, 0, 401), np.linspace(0, 1, 401)), -1).reshape(-1, 2)
    dense = np.abs(n1.forward(g) - n2.forward(g)).max()
    at_witness = np.abs(n1.forward(rep.witness_x) - n2.forward(rep.witness_x)).max()
    assert rep.witnessed == pytest.approx(at_witness, abs=1e-5)  # float32 files vs float64
    assert box.contains(rep.witness_x)
    assert rep.certified >= max(dense, at_witness) - 1e-12
    assert rep.certified <= 1.05 * rep.witnessed
    assert rep.searches[0]["reason"] == "gap" and rep.boxes <= 5000


def test_cli_writes_table_and_json(tmp_path, capsys, pair):
    _, p1, p2 = pair
    out = tmp_path / "eps.json"
    code = main(["epsilon", str(p1), str(p2), "--lower", "-1,-1,-1", "--upper", "1,1,1",
                 "--verifier", "bounds", "--time-budget", "300", "--max-boxes", "1000",
                 "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "eps = max" in captured.out and "witnesses" in captured.err
    data = json.loads(out.read_text())
    assert set(data["eps"]) == {"witnessed", "certified"}
    assert [o["index"] for o in data["outputs"]] == [0, 1]
    assert len(data["witness"]["x"]) == 3 and isinstance(data["queries"], list)
    assert data["seconds"] > 0 and data["work"]["max_boxes"] == 1000
    assert 0 < data["work"]["boxes"] == sum(s["boxes"] for s in data["searches"]) <= 1000


@pytest.mark.parametrize("args,match", [
    (["--lower", "1,1,1", "--upper", "0,0,0"], "empty"),
    (["--lower", "0,0", "--upper", "1,1"], "3"),
    (["--center", "0,0,0", "--radius", "-0.5"], "radius"),
])
def test_bad_regions_are_refused(capsys, pair, args, match):
    _, p1, p2 = pair
    code = main(["epsilon", str(p1), str(p2), *args, "--verifier", "bounds"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0]


def test_known_kink_is_certified_exactly(tmp_path):
    """N1 = 2 relu(x), N2 = 0.25 over [-1, 0.5]: the difference ranges over [-0.25, 0.75]."""
    relu = Network.from_weights([np.array([[2.0]]), np.array([[1.0]])], [[0.0], [0.0]])
    const = Network.from_weights([np.array([[0.0]])], [[0.25]])
    p1 = save(network_to_model(relu), tmp_path / "relu.onnx")
    p2 = save(network_to_model(const), tmp_path / "const.onnx")
    rep = compute_epsilon(p1, p2, InputSet.of(Box([-1.0], [0.5])),
                          options=EpsilonOptions(verifier="bounds", aim="outputs", rel_gap=1e-6,
                                                 time_budget=SAFETY, max_boxes=1000))
    assert rep.witnessed == pytest.approx(0.75, abs=1e-7)
    assert 0.75 <= rep.certified <= 0.75 + 1e-6
    (out,) = rep.outputs
    assert out.min_witnessed == pytest.approx(-0.25, abs=1e-7)
    assert -0.25 - 1e-6 <= out.min_certified <= -0.25


@pytest.mark.parametrize("engine", ["differential", "zonotope", "crown", "separate"])
def test_every_engine_certifies_above_the_dense_maximum(tmp_path, engine):
    """Same layer sizes (a float16 copy), so every engine applies."""
    rng = np.random.default_rng(11)
    n1 = random_network([2, 16, 16, 2], rng)
    n2 = Network.from_weights([layer.weight.astype(np.float16).astype(np.float64) * 1.01
                               for layer in n1.layers], [layer.bias for layer in n1.layers])
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    box = Box([-1.0, -1.0], [1.0, 1.0])
    rep = compute_epsilon(p1, p2, InputSet.of(box),
                          options=EpsilonOptions(verifier="bounds", engine=engine, rel_gap=0.01,
                                                 time_budget=SAFETY, max_boxes=20_000))
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 501)] * 2), -1).reshape(-1, 2)
    d = n1.forward(g) - n2.forward(g)
    assert rep.engine == engine
    assert rep.certified >= np.abs(d).max() - 1e-12
    assert rep.witnessed <= rep.certified
    assert rep.boxes <= 20_000
    if rep.searches[0]["reason"] != "max-boxes":  # it stopped before its work limit: then
        assert rep.certified <= 1.01 * rep.witnessed + 1e-9  # because the gap closed
    for o in rep.outputs:  # every interval covers the dense range, even where not refined
        assert o.max_certified >= d[:, o.index].max() - 1e-12
        assert o.min_certified <= d[:, o.index].min() + 1e-12


def test_outputs_aim_closes_every_interval(tmp_path):
    rng = np.random.default_rng(12)
    n1, n2 = random_network([2, 12, 12, 3], rng), random_network([2, 6, 3], rng)
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    rep = compute_epsilon(p1, p2, InputSet.of(Box([-1.0, -1.0], [1.0, 1.0])),
                          options=EpsilonOptions(verifier="bounds", aim="outputs", rel_gap=0.01,
                                                 time_budget=SAFETY, max_boxes=5000))
    for o in rep.outputs:
        assert o.max_certified - o.max_witnessed <= 0.01 * abs(o.max_witnessed) + 1e-9
        assert o.min_witnessed - o.min_certified <= 0.01 * abs(o.min_witnessed) + 1e-9


def test_json_is_written_when_the_budget_runs_out(tmp_path, capsys):
    rng = np.random.default_rng(13)
    n1 = random_network([5, 40, 40, 40, 5], rng)
    n2 = Network.from_weights([layer.weight.astype(np.float16).astype(np.float64)
                               for layer in n1.layers], [layer.bias for layer in n1.layers])
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    out = tmp_path / "eps.json"
    code = main(["epsilon", str(p1), str(p2), "--center", "0,0,0,0,0", "--radius", "1",
                 "--verifier", "bounds", "--rel-gap", "0", "--time-budget", "0.5",
                 "--json", str(out), "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert 0 < data["eps"]["witnessed"] <= data["eps"]["certified"] < np.inf
    assert data["searches"][0]["reason"] == "budget"


def test_a_work_limit_gives_the_same_bound_on_a_loaded_machine(tmp_path, capsys):
    """One ``nnbisim epsilon`` command with ``--max-boxes`` (and a time budget it never
    reaches), run alone and then beside a CPU hog on every core: the same certified bound, to
    the last bit, and the same work. A time budget alone gave different bounds here (the
    batches are sized by the clock)."""
    rng = np.random.default_rng(13)
    n1 = random_network([5, 24, 24, 5], rng)
    n2 = Network.from_weights([layer.weight.astype(np.float16).astype(np.float64)
                               for layer in n1.layers], [layer.bias for layer in n1.layers])
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    runs = []
    for hogs in (0, os.cpu_count() or 2):
        hog = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
        try:
            out = tmp_path / f"eps{hogs}.json"
            assert main(["epsilon", str(p1), str(p2), "--center", "0,0,0,0,0", "--radius", "1",
                         "--verifier", "bounds", "--rel-gap", "0", "--time-budget", "300",
                         "--max-boxes", "100", "--json", str(out), "--quiet"]) == 0
        finally:
            for h in hog:
                h.kill()
                h.wait()
        runs.append(json.loads(out.read_text()))
    capsys.readouterr()
    quiet, loaded = runs
    assert quiet["searches"][0]["reason"] == "max-boxes"  # the work limit ended it, not time
    assert quiet["eps"] == loaded["eps"] and quiet["outputs"] == loaded["outputs"]
    assert quiet["work"] == loaded["work"] and quiet["work"]["boxes"] <= 100
    assert quiet["eps"]["witnessed"] < quiet["eps"]["certified"] < np.inf  # the gap is open


@pytest.mark.parametrize("command", [["epsilon", "N1", "N2"], ["assure", "N1", "P"],
                                     ["enlarge", "N1", "N2", "P", "-o", "E"],
                                     ["discrepancy", "N1", "N2"]])
@pytest.mark.parametrize("value", ["0", "-3", "1.5", "many"])
def test_max_boxes_is_a_positive_whole_number(capsys, command, value):
    code = main([*command, "--max-boxes", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"--max-boxes: invalid positive integer value: " \
        f"'{value}'" in err[0]


def test_unknown_aim_is_refused(pair):
    _, p1, p2 = pair
    with pytest.raises(Exception, match="aim"):
        compute_epsilon(p1, p2, InputSet.of(Box(-np.ones(3), np.ones(3))),
                        options=EpsilonOptions(aim="everything"))


def test_a_subset_of_objectives_is_certified_alone(tmp_path):
    rng = np.random.default_rng(5)
    n1, n2 = random_network([2, 10, 3], rng), random_network([2, 10, 3], rng)
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    rep = compute_epsilon(p1, p2, InputSet.of(Box([-1.0, -1.0], [1.0, 1.0])),
                          options=EpsilonOptions(verifier="bounds", aim="outputs", rel_gap=0.01,
                                                 time_budget=SAFETY, max_boxes=5000,
                                                 objectives={(1, -1)}))
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 301)] * 2), -1).reshape(-1, 2)
    d = n1.forward(g) - n2.forward(g)
    o = rep.outputs[1]
    assert np.isfinite(o.min_certified) and o.min_certified <= d[:, 1].min() + 1e-12
    assert o.min_witnessed - o.min_certified <= 0.01 * abs(o.min_witnessed) + 1e-9
    assert all(np.isinf(p.max_certified) for p in rep.outputs)
    assert np.isinf(rep.outputs[0].min_certified) and np.isinf(rep.outputs[2].min_certified)
