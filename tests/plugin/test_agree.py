"""Top-1 agreement (``nnbisim agree``, ``spec --agree``) on pairs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from netbuild import random_network, save

from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.cli.main import main
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.specs.io import read_spec, read_spec_cases
from nnbisim.specs.sets import Box, InputSet, TwoNetworkQuery
from nnbisim.tasks.agree import AgreeOptions, decide_agreement, disagreement

BOX = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))


def two_class(shift: float, name: str) -> Network:
    """y = [x0 - shift, -x0] through a hidden layer (class 0 where x0 > shift / 2)."""
    w1 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    w2 = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])
    return Network.from_weights([w1, w2], [np.zeros(3), np.array([-shift, 0.0])], (2,),
                                name=name)


@pytest.fixture()
def shifted(tmp_path):
    """N1 says class 0 for x0 > 0, N2 for x0 > 0.25: they disagree on 0 < x0 < 0.25."""
    p1 = save(network_to_model(two_class(0.0, "n1")), tmp_path / "n1.onnx")
    p2 = save(network_to_model(two_class(0.5, "n2")), tmp_path / "n2.onnx")
    return p1, p2


@pytest.mark.parametrize("engine", ["differential", "product"])
def test_known_disagreement_is_found_and_replayed(shifted, engine):
    a = decide_agreement(*shifted, BOX, time_budget=60.0,
                         options=AgreeOptions(engine=engine))
    assert a.status is Status.VIOLATED
    assert 0.0 < a.witness_x[0] < 0.25 and a.classes == (0, 1)
    y1, y2 = a.logits
    assert y1[0] > y1[1] and y2[1] > y2[0]


@pytest.mark.parametrize("engine", ["differential", "product"])
def test_confident_region_agrees(shifted, engine):
    # where N1 leads by more than 0.6 (x0 > 0.3 or x0 < -0.3), N2 agrees: delta-top-1 holds
    a = decide_agreement(*shifted, BOX, delta=0.6, time_budget=60.0,
                         options=AgreeOptions(engine=engine))
    assert a.status is Status.HOLDS, a.notes
    # and the claim on a dense grid
    x = np.stack(np.meshgrid(np.linspace(-1, 1, 401), np.linspace(-1, 1, 5)), -1).reshape(-1, 2)
    y1, y2 = two_class(0.0, "a").forward(x), two_class(0.5, "b").forward(x)
    confident = y1.max(1) - y1.min(1) > 0.6
    assert np.all(y1.argmax(1)[confident] == y2.argmax(1)[confident])
    # just below the gap's edge it is violated again
    assert decide_agreement(*shifted, BOX, delta=0.4, time_budget=60.0).status \
        is Status.VIOLATED


def test_identical_networks_agree_away_from_ties_and_never_disagree(tmp_path):
    net = random_network([3, 12, 12, 4], np.random.default_rng(5))
    lead = Network.from_weights([layer.weight for layer in net.layers],
                                [*(layer.bias for layer in net.layers[:-1]),
                                 net.layers[-1].bias + np.array([30.0, 0.0, 0.0, 0.0])], (3,))
    p = save(network_to_model(lead), tmp_path / "a.onnx")
    q = save(network_to_model(lead), tmp_path / "b.onnx")
    small = InputSet.of(Box([-0.2, -0.2, -0.2], [0.2, 0.2, 0.2]))
    assert decide_agreement(p, q, small, time_budget=60.0).status is Status.HOLDS
    # a box across the decision boundaries: the same network ties there, never disagrees
    p2 = save(network_to_model(net), tmp_path / "c.onnx")
    wide = InputSet.of(Box([-3.0] * 3, [3.0] * 3))
    a = decide_agreement(p2, p2, wide, time_budget=3.0, options=AgreeOptions(max_boxes=200))
    assert a.status is Status.UNKNOWN


def test_disagreement_polytopes_have_the_stated_rows():
    unsafe = disagreement(3, delta=0.5)
    assert len(unsafe.disjuncts) == 6
    # N1: class 0 leads by 0.7, N2: class 2 above class 0 -> in the (0, 2) polytope only
    y = [1.0, 0.3, 0.2, 0.2, 0.1, 0.5]
    hits = [k for k, p in enumerate(unsafe.disjuncts) if p.satisfied_by(y)]
    assert hits == [1]
    assert not unsafe.satisfied_by([1.0, 0.6, 0.2, 0.2, 0.1, 0.5])  # lead 0.4 < 0.5
    assert not unsafe.satisfied_by([1.0, 0.3, 0.2, 0.5, 0.1, 0.5])  # N2 ties 0 and 2


def test_cli_exit_codes_json_and_spec_files(shifted, tmp_path, capsys):
    p1, p2 = shifted
    box = ["--lower", "-1,-1", "--upper", "1,1"]
    out = tmp_path / "a.json"
    assert main(["agree", str(p1), str(p2), *box, "--json", str(out), "--quiet"]) == 1
    data = json.loads(out.read_text())
    assert data["verdict"] == "violated" and data["witness"]["class_n1"] == 0
    assert main(["agree", str(p1), str(p2), *box, "--delta", "0.6", "--quiet"]) == 0
    assert main(["agree", str(p1), str(p2), *box, "--delta", "-1"]) == 2
    assert "--delta" in capsys.readouterr().err
    # the same question for other verifiers: 2.0 on the pair, 1.0 on the merged network
    q2 = tmp_path / "agree2.vnnlib"
    assert main(["spec", *box, "--agree", "0", "--pair", str(p1), str(p2),
                 "--vnnlib-version", "2.0", "-o", str(q2)]) == 0
    query = read_spec(q2)
    assert isinstance(query, TwoNetworkQuery) and len(query.unsafe.disjuncts) == 2
    assert query.unsafe.disjuncts[0].strict == (True, True)
    merged = tmp_path / "m.onnx"
    assert main(["merge", str(p1), str(p2), "--outputs", "all", "-o", str(merged)]) == 0
    q1 = tmp_path / "agree1.vnnlib"
    assert main(["spec", *box, "--agree", "0", "--model", str(merged), "-o", str(q1)]) == 0
    (case,) = read_spec_cases(q1)
    assert len(case.unsafe.disjuncts) == 2 and case.unsafe.out_dim == 6
    diff_only = tmp_path / "d.onnx"
    assert main(["merge", str(p1), str(p2), "-o", str(diff_only)]) == 0
    assert main(["spec", *box, "--agree", "0", "--model", str(diff_only), "-o",
                 str(tmp_path / "x.vnnlib")]) == 2
    assert "--outputs all" in capsys.readouterr().err


@pytest.mark.marabou
@pytest.mark.parametrize("delta, expected", [(0.0, Status.VIOLATED), (0.6, Status.HOLDS)])
def test_marabou_answers_the_merged_instance_alike(shifted, tmp_path, delta, expected):
    from nnbisim.verifiers.queries import marabou_per_disjunct

    p1, p2 = shifted
    merged, spec = tmp_path / "m.onnx", tmp_path / "q.vnnlib"
    assert main(["merge", str(p1), str(p2), "--outputs", "all", "-o", str(merged)]) == 0
    assert main(["spec", "--lower", "-1,-1", "--upper", "1,1", "--agree", str(delta),
                 "--model", str(merged), "-o", str(spec)]) == 0
    status, x = marabou_per_disjunct(merged, read_spec_cases(spec), 60.0, tmp_path)
    assert status is expected
    assert decide_agreement(p1, p2, BOX, delta=delta, time_budget=60.0).status is expected
    if x is not None:  # Marabou's point, replayed by the per-disjunct runner: a real one
        assert 0.0 <= x[0] <= 0.25 + 1e-6


def test_the_int8_network_with_rounded_activations_is_bounded_soundly(tmp_path):
    # the second paper's pair: rows over [y1 ; y2] bounded with the int8 network's rounding,
    # checked against both networks at sampled points; then agree on a small ball
    from conftest import DATA

    from nnbisim.adapters.mnist import load_test_set
    from nnbisim.adapters.models import load_any
    from nnbisim.search.subjects import with_quantized

    p1 = DATA / "fnn-repair" / "mnist_fnn_l_ori.pth"
    p2 = DATA / "fnn-repair" / "mnist_fnn_s_quan.pth"
    n1, n2 = load_any(p1), load_any(p2)
    subject = with_quantized(n1, n2)
    x, _ = load_test_set()
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 20))
    for image, radius in ((0, 0.01), (3, 0.05)):
        lo, hi = np.clip(x[image] - radius, -1, 1), np.clip(x[image] + radius, -1, 1)
        low, _ = subject.rows(lo[None], hi[None], rows)
        pts = rng.uniform(lo, hi, size=(300, 784))
        pts[:2] = lo, hi
        values = subject.forward(pts) @ rows.T  # (300, 6)
        assert np.all(values >= low[0] - 1e-9)
    box = InputSet.of(Box(np.clip(x[0] - 0.005, -1, 1), np.clip(x[0] + 0.005, -1, 1)))
    assert decide_agreement(p1, p2, box, time_budget=60.0).status is Status.HOLDS
    with pytest.raises(InputError, match="as N1"):
        decide_agreement(p2, p1, box, time_budget=5.0)
