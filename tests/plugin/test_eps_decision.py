"""``nnbisim epsilon --eps E``: is |N1 - N2|_i <= E everywhere in X? Known answers on networks
built for them, ACAS Xu against its float16 copy, dense-sample checks of every ``holds`` and a
replay check of every ``violated``, the command line's exit codes and refusals. Every search is
cut by a work limit (boxes bounded); the time budgets are only safety nets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import acas_net
from netbuild import random_network, save

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.cli.main import main
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.sets import Box, InputSet
from nnbisim.tasks.eps_decision import decide_epsilon
from nnbisim.tasks.options import EpsilonOptions

SAFETY = 300.0
WORK = EpsilonOptions(time_budget=SAFETY, max_boxes=4000)


def _shifted_pair(tmp_path):
    """N2 = N1 with output 0's bias raised by 0.25: (N1 - N2) = (-0.25, 0) everywhere."""
    rng = np.random.default_rng(1)
    n1 = random_network([3, 12, 12, 2], rng)
    bias = n1.layers[-1].bias.copy()
    bias[0] += 0.25
    n2 = Network.from_weights([layer.weight for layer in n1.layers],
                              [*(layer.bias for layer in n1.layers[:-1]), bias])
    return (save(network_to_model(n1), tmp_path / "n1.onnx"),
            save(network_to_model(n2), tmp_path / "n2.onnx"))


def test_known_difference_holds_above_and_is_violated_below(tmp_path):
    p1, p2 = _shifted_pair(tmp_path)
    box = InputSet.of(Box([-1.0] * 3, [1.0] * 3))
    above = decide_epsilon(p1, p2, box, 0.3, options=WORK)
    assert above.status is Status.HOLDS and above.witness_x is None
    below = decide_epsilon(p1, p2, box, 0.2, options=WORK)
    assert below.status is Status.VIOLATED
    assert below.witness_output == (0, -1)
    assert below.witness_value == pytest.approx(0.25, abs=1e-6)  # onnxruntime, float32
    assert np.all(np.abs(below.witness_x) <= 1.0)
    only_second = decide_epsilon(p1, p2, box, 0.1, outputs=(1,), options=WORK)
    assert only_second.status is Status.HOLDS and only_second.outputs == (1,)


def _scaled_pair(tmp_path):
    """A float16 copy of a random network with weights 1% larger, and its largest |N1 - N2|
    on a dense grid of [-1, 1]^2."""
    rng = np.random.default_rng(5)
    n1 = random_network([2, 16, 16, 2], rng)
    n2 = Network.from_weights([layer.weight.astype(np.float16).astype(np.float64) * 1.01
                               for layer in n1.layers], [layer.bias for layer in n1.layers])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 401)] * 2), -1).reshape(-1, 2)
    return (save(network_to_model(n1), tmp_path / "a.onnx"),
            save(network_to_model(n2), tmp_path / "b.onnx"),
            np.abs(n1.forward(g) - n2.forward(g)).max())


def test_holds_is_above_the_dense_maximum_and_violations_replay(tmp_path):
    p1, p2, top = _scaled_pair(tmp_path)
    box = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))
    for eps in (0.5 * top, 0.9 * top, 1.1 * top, 2.0 * top):
        ans = decide_epsilon(p1, p2, box, eps, options=WORK)
        assert ans.boxes <= WORK.max_boxes
        if ans.status is Status.HOLDS:
            assert top < eps
        if ans.status is Status.VIOLATED:
            assert ans.witness_value > eps
    assert decide_epsilon(p1, p2, box, 0.5 * top, options=WORK).status is Status.VIOLATED
    assert decide_epsilon(p1, p2, box, 2.0 * top, options=WORK).status is Status.HOLDS


def test_acas_float16_copy_on_property_3(tmp_path):
    net = load_network(acas_net(1, 1))
    copy = Network.from_weights(
        [layer.weight.astype(np.float16).astype(np.float64) for layer in net.layers],
        [layer.bias.astype(np.float16).astype(np.float64) for layer in net.layers],
        net.input_shape)
    p2 = save(network_to_model(copy), tmp_path / "f16.onnx")
    box = read_spec_cases(acas_net(1, 1).parent / "prop_3.vnnlib")[0].box
    inputs = InputSet.of(box)
    assert decide_epsilon(acas_net(1, 1), p2, inputs, 0.01, options=WORK).status is Status.HOLDS
    tiny = decide_epsilon(acas_net(1, 1), p2, inputs, 1e-7, options=WORK)
    assert tiny.status is Status.VIOLATED and tiny.witness_value > 1e-7
    x = tiny.witness_x
    assert np.all(x >= box.lower) and np.all(x <= box.upper)


def test_a_work_limit_too_small_leaves_it_unknown(tmp_path):
    p1, p2, top = _scaled_pair(tmp_path)
    box = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))
    tight = EpsilonOptions(time_budget=SAFETY, max_boxes=1)
    ans = decide_epsilon(p1, p2, box, 1.02 * top, options=tight)
    assert ans.status is Status.UNKNOWN and ans.boxes <= 1


def test_command_line_exit_codes_json_and_refusals(tmp_path, capsys):
    p1, p2 = _shifted_pair(tmp_path)
    region = ["--lower", "-1,-1,-1", "--upper", "1,1,1", "--max-boxes", "4000"]
    out = tmp_path / "holds.json"
    code = main(["epsilon", str(p1), str(p2), *region, "--eps", "0.3", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["verdict"] == "holds" and data["outputs"] == [0, 1]
    assert data["work"]["max_boxes"] == 4000
    assert "holds" in capsys.readouterr().out
    out = tmp_path / "violated.json"
    code = main(["epsilon", str(p1), str(p2), *region, "--eps", "0.2", "--outputs", "0",
                 "--json", str(out)])
    assert code == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "violated" and data["witness"]["index"] == 0
    assert data["witness"]["value"] > 0.2
    capsys.readouterr()
    for extra, match in ((["--outputs", "0"], "--outputs needs --eps"),
                         (["--eps", "0.1", "--outputs", "2"], "from 0 to 1"),
                         (["--eps", "0.1", "--outputs", "0,0"], "distinct"),
                         (["--eps", "-1"], "--eps -1.0: give a number >= 0")):
        assert main(["epsilon", str(p1), str(p2), *region, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
