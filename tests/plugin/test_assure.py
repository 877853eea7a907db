"""Assured compression on small pairs with known answers, and the enlarged unsafe sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ACAS, acas_net
from netbuild import random_network, save

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.cli.main import main
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.search.decide import decide
from nnbisim.search.subjects import single
from nnbisim.specs.assurance import enlarge
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, SpecCase
from nnbisim.tasks.assure import assure
from nnbisim.tasks.enlarge import objectives_of
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import AssureOptions, EpsilonOptions
from nnbisim.tasks.outlook import outlook

# the decisions below are reached within their work limits (boxes bounded, the same on any
# machine); the time budgets are only safety nets that a loaded machine never reaches
SAFETY = 300.0


def test_enlarged_sets_contain_every_shifted_point():
    rng = np.random.default_rng(0)
    mat, rhs = rng.normal(size=(3, 4)), rng.normal(size=3)
    unsafe = OutputConstraint((Polytope(mat, rhs),))
    lo, hi = -rng.random(4) * 0.1, rng.random(4) * 0.1
    big = enlarge(unsafe, lo, hi)
    for _ in range(2000):  # y1 unsafe and y1 - y2 in [lo, hi]  =>  y2 in the enlarged set
        y1 = rng.normal(size=4) * 3
        if not unsafe.satisfied_by(y1):
            continue
        y2 = y1 - rng.uniform(lo, hi)
        assert big.satisfied_by(y2)
    sym = enlarge(unsafe, -0.1 * np.ones(4), 0.1 * np.ones(4)).disjuncts[0].rhs
    np.testing.assert_allclose(sym, rhs + 0.1 * np.abs(mat).sum(1), rtol=1e-12)


@pytest.fixture()
def pair(tmp_path):
    rng = np.random.default_rng(1)
    n1 = random_network([2, 12, 12, 1], rng)
    n2 = Network.from_weights([layer.weight * 1.005 for layer in n1.layers],
                              [layer.bias for layer in n1.layers])
    p1 = save(network_to_model(n1), tmp_path / "n1.onnx")
    p2 = save(network_to_model(n2), tmp_path / "n2.onnx")
    box = Box([-1.0, -1.0], [1.0, 1.0])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    top = float(n1.forward(g).max())
    eps = float(np.abs(n1.forward(g) - n2.forward(g)).max())
    return p1, p2, box, top, eps


def at_least(t: float) -> OutputConstraint:
    return OutputConstraint((Polytope(np.array([[-1.0]]), [-t]),))


def test_safe_with_margin_is_proved_through_the_compressed_network(pair):
    p1, p2, box, top, eps = pair
    prop = [SpecCase(box, at_least(top + 5 * eps + 0.01))]
    rep = assure(p1, prop, p2, options=AssureOptions(time_budget=SAFETY, max_boxes=2000,
                                                     quick_direct=0.0))
    assert rep.verdict == "holds" and rep.route == "compressed"
    assert 0 < rep.boxes <= 2000 and rep.to_json()["work"] == {"max_boxes": 2000,
                                                                "boxes": rep.boxes}
    # by default a quick look at N1 comes first, and may prove it there
    rep = assure(p1, prop, p2, options=AssureOptions(time_budget=SAFETY, max_boxes=2000))
    assert rep.verdict == "holds" and rep.route in ("direct", "compressed")


@pytest.mark.marabou
def test_marabou_decides_the_enlarged_property_and_what_is_left_of_n1(pair):
    p1, p2, box, top, eps = pair
    rep = assure(p1, [SpecCase(box, at_least(top + 5 * eps + 0.01))], p2,
                 options=AssureOptions(time_budget=60, quick_direct=0.0, verifier="marabou"))
    assert rep.verdict == "holds" and rep.route == "compressed"
    # no time for N2: Marabou decides the whole box on N1 (just above its sampled maximum)
    rep = assure(p1, [SpecCase(box, at_least(top + 0.01))], p2,
                 options=AssureOptions(time_budget=60, quick_direct=0.0, compressed_share=0.0,
                                       verifier="marabou"))
    assert rep.verdict == "holds" and rep.route == "direct"


def test_a_real_violation_is_replayed_on_n1(pair):
    p1, p2, box, top, eps = pair
    rep = assure(p1, [SpecCase(box, at_least(top - 0.05))], p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=2000))
    assert rep.verdict == "violated" and box.contains(rep.counterexample)


def test_inside_eps_the_boxes_are_refined_or_decided_directly(pair):
    """Safe for N1 by less than eps: N2's enlarged set is reachable, so the search splits boxes
    (eps shrinks with them) or asks N1 directly, and never answers violated. 100 boxes in all:
    too few for the quick look (10) to prove it on N1, enough for the halves and N1."""
    p1, p2, box, top, eps = pair
    rep = assure(p1, [SpecCase(box, at_least(top + 0.2 * eps))], p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=100, quick_direct=0.1,
                                       compressed_share=0.4, refine="halves"))
    assert rep.verdict == "holds" and rep.boxes <= 100
    assert any(p.result == "split" for p in rep.pieces) or rep.route != "compressed"


def test_boxes_the_compressed_route_leaves_open_are_decided_on_n1(tmp_path, pair):
    """N2 far from N1 (eps larger than the margin over the whole box): the route through N2
    gets its share of the work, N1 decides what it leaves; the settled pieces tile the box."""
    p1, _p2, box, top, _eps = pair

    n1 = load_network(p1)
    far = Network.from_weights([layer.weight * 1.5 for layer in n1.layers],
                               [layer.bias for layer in n1.layers])
    p2 = save(network_to_model(far), tmp_path / "far.onnx")
    prop = [SpecCase(box, at_least(top + 0.05))]
    rep = assure(p1, prop, p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=400, quick_direct=0.0,
                                       compressed_share=0.3, refine="halves"))
    assert rep.verdict == "holds" and rep.boxes <= 400
    settled = [p for p in rep.pieces if p.route != "open"]
    assert {p.result for p in settled} == {"holds"} and "direct" in {p.route for p in settled}
    volume = sum(float(np.prod(p.upper - p.lower)) for p in settled)
    assert volume == pytest.approx(float(np.prod(box.upper - box.lower)), rel=1e-12)
    # no work for the route through N2 (4 boxes): the case goes to N1 whole, in one piece
    rep = assure(p1, prop, p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=400, quick_direct=0.0,
                                       compressed_share=0.01, refine="halves"))
    assert rep.verdict == "holds" and rep.route == "direct" and len(rep.pieces) == 1
    np.testing.assert_array_equal(rep.pieces[0].lower, box.lower)
    np.testing.assert_array_equal(rep.pieces[0].upper, box.upper)


def test_only_the_sides_the_unsafe_set_uses_are_bounded():

    # y0 >= 3 (as -y0 <= -3) or y1 - y2 <= 0: min of nothing for y0 (C0 < 0: its max),
    # the min of output 1 and the max of output 2
    unsafe = OutputConstraint((Polytope(np.array([[-1.0, 0, 0]]), np.array([-3.0])),
                               Polytope(np.array([[0, 1.0, -1.0]]), np.array([0.0]))))
    assert objectives_of(unsafe) == {(0, 1), (1, -1), (2, 1)}


def test_the_command_distills_by_default_and_refuses_two_compressions(tmp_path, capsys, pair,
                                                                       monkeypatch):

    p1, p2, _box, top, _eps = pair
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                    "(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"
                    "(assert (>= X_1 -1))\n(assert (<= X_1 1))\n"
                    f"(assert (>= Y_0 {top + 1.0!r}))\n")
    out = tmp_path / "r.json"
    code = main(["assure", str(p1), str(prop), "--time-budget", "300", "--max-boxes", "2000",
                 "--workdir", str(tmp_path / "w"), "--json", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0 and "HOLDS" in text
    assert (tmp_path / "w" / "n1_distill.onnx").exists()
    report = json.loads(out.read_text())
    assert report["verdict"] == "holds" and report["n2"].endswith("n1_distill.onnx")
    assert report["route"] == "compressed" and report["pieces"][0]["eps_witnessed"] >= 0
    assert report["work"]["max_boxes"] == 2000 and report["work"]["boxes"] <= 2000
    # the paper's refinement by halves, from the command line too
    assert main(["assure", str(p1), str(prop), "--compressed", str(p2), "--refine", "halves",
                 "--time-budget", "300", "--max-boxes", "2000", "--quiet"]) == 0
    assert "HOLDS (route compressed" in capsys.readouterr().out
    # without --workdir the compressed network is a scratch file: reruns work, nothing is left
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for _ in range(2):
        assert main(["assure", str(p1), str(prop), "--time-budget", "300", "--max-boxes",
                     "2000", "--quiet", "--compress", "float16", "--json", "r.json",
                     "--force"]) == 0
    assert sorted(f.name for f in here.iterdir()) == ["r.json"]
    assert json.loads((here / "r.json").read_text())["n2"] is None
    assert "not kept" in capsys.readouterr().err
    code = main(["assure", str(p1), str(prop), "--compressed", str(p2), "--compress", "prune"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not both" in err[0]


def _vnnlib1(path, lo, hi, threshold: float, extra_box=None):
    """``Y_0 >= threshold`` over one box (or, with ``extra_box``, a second box whose unsafe
    set is ``Y_0 >= threshold + 1``)."""
    def box(lo, hi):
        return " ".join(f"(>= X_{i} {float(lo[i])!r}) (<= X_{i} {float(hi[i])!r})"
                        for i in range(len(lo)))
    head = "".join(f"(declare-const X_{i} Real)\n" for i in range(len(lo)))
    head += "(declare-const Y_0 Real)\n"
    if extra_box is None:
        body = f"(assert (and {box(lo, hi)}))\n(assert (>= Y_0 {threshold!r}))\n"
    else:
        body = (f"(assert (or (and {box(lo, hi)} (>= Y_0 {threshold!r}))\n"
                f"            (and {box(*extra_box)} (>= Y_0 {threshold + 1.0!r}))))\n")
    path.write_text(head + body)
    return path


def test_enlarge_writes_what_n2_must_satisfy_in_both_versions(tmp_path, capsys, pair):

    p1, p2, box, top, eps = pair
    threshold = top + 5 * eps + 0.01
    prop = _vnnlib1(tmp_path / "p.vnnlib", box.lower, box.upper, threshold)
    n1, n2 = load_network(p1), load_network(p2)
    g = np.random.default_rng(3).uniform(box.lower, box.upper, size=(20000, 2))
    shift = float((n1.forward(g) - n2.forward(g)).max())  # a sampled max of N1 - N2
    for version in ("1.0", "2.0"):
        out = tmp_path / f"e{version}.vnnlib"
        code = main(["enlarge", str(p1), str(p2), str(prop), "-o", str(out), "--time-budget",
                     "300", "--max-boxes", "2000", "--vnnlib-version", version, "--quiet",
                     "--json", str(tmp_path / f"e{version}.json")])
        assert code == 0 and "box 0: N1 - N2 in y0" in capsys.readouterr().out
        (case,) = read_spec_cases(out)  # 2.0 goes through the vnnlib package
        np.testing.assert_array_equal(case.box.lower, box.lower)
        # Y_0 >= t - hi with hi >= every value of N1 - N2: below the threshold by at least it
        (poly,) = case.unsafe.disjuncts
        assert poly.mat.tolist() == [[-1.0]]
        assert -poly.rhs[0] <= threshold - shift + 1e-9
        assert decide(single(n2), [case], SAFETY, max_boxes=2000).status.value == "holds"
        data = json.loads((tmp_path / f"e{version}.json").read_text())
        assert data["boxes"][0]["diff_lower"] == [None]  # the minimum is not used
        assert data["max_boxes"] == 2000 and 0 < data["boxes"][0]["boxes"] <= 2000
    # refusals: an existing file, and box-specific unsafe sets in 2.0
    refused = main(["enlarge", str(p1), str(p2), str(prop), "-o", str(out)])
    assert refused == 2 and "--force" in capsys.readouterr().err
    two = _vnnlib1(tmp_path / "two.vnnlib", box.lower, box.center, threshold,
                   extra_box=(box.center, box.upper))
    refused = main(["enlarge", str(p1), str(p2), str(two), "-o", str(tmp_path / "t.vnnlib"),
                    "--vnnlib-version", "2.0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert refused == 2 and len(err) == 1 and "--vnnlib-version 1" in err[0]
    # 1.0 keeps each box's own enlarged set
    assert main(["enlarge", str(p1), str(p2), str(two), "-o", str(tmp_path / "t.vnnlib"),
                 "--time-budget", "300", "--max-boxes", "2000", "--quiet"]) == 0
    cases = read_spec_cases(tmp_path / "t.vnnlib")
    assert len(cases) == 2
    assert cases[1].unsafe.disjuncts[0].rhs[0] < cases[0].unsafe.disjuncts[0].rhs[0]


def test_the_route_through_n2_is_given_up_where_eps_cannot_fit_the_margin(tmp_path, pair):
    """N1 safe by a hair, N2 far from N1: no eps N2 can reach fits the margin, so the box goes
    to N1 at once (with the reason in the report) instead of being split to MAX_DEPTH."""
    p1, _p2, box, top, _eps = pair

    n1 = load_network(p1)
    far = Network.from_weights([layer.weight * 1.5 for layer in n1.layers],
                               [layer.bias for layer in n1.layers])
    p2 = save(network_to_model(far), tmp_path / "far.onnx")
    rep = assure(p1, [SpecCase(box, at_least(top + 1e-3))], p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=2000, quick_direct=0.0,
                                       refine="halves"))
    assert rep.verdict == "holds" and rep.route == "direct"
    assert [p.result for p in rep.pieces if p.route == "open"] == ["left to N1"]
    assert len(rep.notes) == 1 and "margin" in rep.notes[0]


def test_the_refined_route_proves_through_n2_what_one_eps_per_box_cannot(tmp_path, pair):
    """The case above by default: one branch and bound through N2, each piece with its own
    certified eps (which shrinks with the piece), proves it through N2 alone; the record keeps
    eps over the whole box, certified by one pass and seen at points."""
    p1, _p2, box, top, _eps = pair

    n1 = load_network(p1)
    far = Network.from_weights([layer.weight * 1.5 for layer in n1.layers],
                               [layer.bias for layer in n1.layers])
    p2 = save(network_to_model(far), tmp_path / "far.onnx")
    rep = assure(p1, [SpecCase(box, at_least(top + 1e-3))], p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=4000))
    assert rep.verdict == "holds" and rep.route == "compressed" and len(rep.pieces) == 1
    piece = rep.pieces[0]
    assert piece.eps >= piece.eps_witnessed > 1e-3  # far more than the margin, over the box
    assert piece.eps_seconds > 0 and piece.n2_seconds > 0 and piece.direct_seconds == 0
    data = rep.to_json()
    assert data["eps_witnessed_max"] == piece.eps_witnessed
    with pytest.raises(InputError, match="halves"):
        assure(p1, [SpecCase(box, at_least(top + 1e-3))], p2,
               options=AssureOptions(refine="thirds"))


def test_what_the_refined_route_leaves_open_n1_goes_on_from(tmp_path, pair):
    """Too little work for the route through N2 to finish (200 of 4000 boxes, where it needs
    over 1000): N1 directly takes over the pieces it left open (not the whole box again) and
    completes the proof."""
    p1, _p2, box, top, _eps = pair
    n1 = load_network(p1)
    far = Network.from_weights([layer.weight * 1.5 for layer in n1.layers],
                               [layer.bias for layer in n1.layers])
    p2 = save(network_to_model(far), tmp_path / "far.onnx")
    rep = assure(p1, [SpecCase(box, at_least(top + 1e-4))], p2,
                 options=AssureOptions(time_budget=SAFETY, max_boxes=4000,
                                       compressed_share=0.05))
    assert rep.verdict == "holds" and rep.route == "direct"
    assert [(p.route, p.result) for p in rep.pieces] == [("open", "left to N1"),
                                                        ("direct", "holds")]
    assert len(rep.notes) == 1 and "goes on from them" in rep.notes[0]
    assert "all" not in rep.notes[0]  # it kept its open pieces


def test_the_outlook_weighs_the_margin_against_the_spread_and_the_reach(pair):
    p1, p2, box, top, eps = pair
    max_depth = AssureOptions().max_depth
    net1 = load_network(p1)
    n1 = single(net1)
    rep = compute_epsilon(p1, p2, InputSet.of(box),
                          options=EpsilonOptions(verifier="bounds", aim="outputs",
                                                 time_budget=SAFETY, max_boxes=2000,
                                                 objectives={(0, 1)}))
    rng = np.random.default_rng(0)
    wide = outlook(n1, SpecCase(box, at_least(top + 5 * eps + 0.01)), rep, {(0, 1)}, 0, None, rng)
    assert wide.margin > 5 * eps and not wide.hopeless
    assert wide.spread <= wide.reach and wide.rate == 0.5 and wide.left == max_depth
    # the margin is the smallest slack found: the sampled maximum of N1 is close to top
    assert wide.margin == pytest.approx(5 * eps + 0.01, abs=1e-3)
    tight = outlook(n1, SpecCase(box, at_least(top + 1e-6 * eps)), rep, {(0, 1)}, 0, None, rng)
    assert tight.hopeless
    # a probe inside the unsafe set: margin <= 0, the probe is the candidate counterexample
    bad = outlook(n1, SpecCase(box, at_least(top - 0.1)), rep, {(0, 1)}, 0, None, rng)
    assert bad.margin <= 0 and float(net1.forward(bad.x)[0]) >= top - 0.1
    # no progress since the whole box: the reach must fit the margin as it is
    stuck = outlook(n1, SpecCase(box, at_least(top + 5 * eps + 0.01)), rep, {(0, 1)}, 3, wide.reach,
                    rng)
    assert stuck.rate == pytest.approx(1.0) and stuck.left == max_depth - 3


def test_exit_codes_say_the_verdict_and_the_seconds_cover_the_whole_run(tmp_path, capsys,
                                                                       pair):
    """0 holds (above), 1 violated, 3 undecided; the reported seconds include loading and
    making N2, which come out of the budget."""
    p1, p2, _box, top, _eps = pair
    head = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
            "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n"
            "(assert (<= X_1 1))\n")
    reached = tmp_path / "reached.vnnlib"
    reached.write_text(head + f"(assert (>= Y_0 {top - 0.5!r}))\n")
    out = tmp_path / "v.json"
    assert main(["assure", str(p1), str(reached), "--compressed", str(p2), "--time-budget",
                 "300", "--max-boxes", "2000", "--json", str(out), "--quiet"]) == 1
    assert "VIOLATED" in capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rep["total_seconds"] >= rep["setup_seconds"] >= 0
    # ACAS Xu property 1 takes thousands of boxes: none decided within 10
    acas = acas_net(1, 1)
    assert main(["assure", str(acas), str(ACAS / "prop_1.vnnlib"), "--compressed", str(acas),
                 "--time-budget", "300", "--max-boxes", "10", "--quiet"]) == 3
    assert "TIMEOUT" in capsys.readouterr().out


def test_the_routes_on_two_workers_reach_the_same_verdicts(tmp_path, pair):
    """The branch and bounds through N2 and on N1 directly, on two workers (open boxes dealt
    in slices, handed from one route to the next): the proofs and the violation of one
    process."""
    p1, _p2, box, top, _eps = pair
    n1 = load_network(p1)
    far = Network.from_weights([layer.weight * 1.5 for layer in n1.layers],
                               [layer.bias for layer in n1.layers])
    p2 = save(network_to_model(far), tmp_path / "far.onnx")
    two = AssureOptions(time_budget=SAFETY, workers=2)
    rep = assure(p1, [SpecCase(box, at_least(top + 1e-3))], p2, options=two)
    assert rep.verdict == "holds"
    short = AssureOptions(time_budget=SAFETY, workers=2, compressed_share=0.002)
    rep = assure(p1, [SpecCase(box, at_least(top + 1e-4))], p2, options=short)
    assert rep.verdict == "holds" and rep.route in ("compressed", "direct")
    rep = assure(p1, [SpecCase(box, at_least(top - 1e-3))], p2, options=two)
    assert rep.verdict == "violated"
