"""The own engine as a decision procedure and as the ``bounds`` verifier plug-in."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import acas_net
from netbuild import random_network, save

from nnbisim.adapters.compress import round_weights
from nnbisim.adapters.merge import merge_networks, split_merged
from nnbisim.adapters.merged_meta import merged_blocks
from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.search.decide import QUICK_SAMPLES, DecideOptions, decide
from nnbisim.search.margins import Margins, falsify
from nnbisim.search.subjects import pair, single, through
from nnbisim.specs.discrepancy import violation_property
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, SpecCase
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.verifiers.registry import get_verifier

# decisions are reached within their work limits (boxes bounded, the same on any machine); the
# time budget is only a safety net that a loaded machine never reaches
SAFETY = 300.0
WORK = 10_000


def at_least(width: int, index: int, t: float) -> OutputConstraint:
    """Unsafe: y[index] >= t."""
    row = np.zeros(width)
    row[index] = -1.0
    return OutputConstraint((Polytope(row, [-t]),))


def test_single_network_holds_and_is_violated_at_the_true_maximum():
    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    top = float(net.forward(g).max())
    subject = single(net)
    held = decide(subject, [SpecCase(box, at_least(1, 0, top + 0.01))], SAFETY, max_boxes=WORK)
    assert held.status is Status.HOLDS and 0 < held.boxes <= WORK
    hit = decide(subject, [SpecCase(box, at_least(1, 0, top - 0.01))], SAFETY, max_boxes=WORK)
    assert hit.status is Status.VIOLATED and box.contains(hit.x)
    assert float(net.forward(hit.x)[0]) >= top - 0.01


def test_witness_search_draws_the_samples_asked(monkeypatch):
    """``samples`` sets how many random points seed the witness search (the assure command's
    quick look asks fewer than decide's default); a witness is still found."""
    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    top = float(net.forward(box.sample(100000, rng)).max())
    drawn = []
    sample = Box.sample
    monkeypatch.setattr(Box, "sample", lambda self, n, g: drawn.append(n) or sample(self, n, g))
    for n in (None, 300):
        hit = decide(single(net), [SpecCase(box, at_least(1, 0, top - 0.05))], 20,
                     options=DecideOptions(samples=n, probe=0))  # the search first
        assert hit.status is Status.VIOLATED and hit.problems[0].how == "witness"
        assert float(net.forward(hit.x)[0]) >= top - 0.05
    assert drawn == [200_000, 300]


def test_pair_rows_decide_a_discrepancy_threshold():
    rng = np.random.default_rng(1)
    n1 = random_network([3, 16, 16, 2], rng)
    n2 = round_weights(n1)
    box = Box(-np.ones(3), np.ones(3))
    x = box.sample(200000, rng)
    d = n1.forward(x) - n2.forward(x)
    top = float(d[:, 0].max())
    for layout, width, col in (("all", 6, 4), ("diff", 2, 0)):
        subject = pair(n1, n2, layout)
        assert subject.n_outputs == width
        held = decide(subject, [SpecCase(box, at_least(width, col, 2 * top + 1e-6))], SAFETY,
                      max_boxes=WORK)
        assert held.status is Status.HOLDS
        # a pair's rows ignore a focus: no second (sharper) bound of the same boxes
        calls = {True: 0, False: 0}
        for focus in (True, False):
            def rows(*args, focus=focus, inner=subject.rows, count=calls):
                count[focus] += 1
                return inner(*args)
            decide(dataclasses.replace(subject, rows=rows),
                   [SpecCase(box, at_least(width, col, 2 * top + 1e-6))], SAFETY,
                   options=DecideOptions(focus=focus), max_boxes=WORK)
        assert not subject.focusable and calls[True] == calls[False] > 1
        hit = decide(subject, [SpecCase(box, at_least(width, col, 0.5 * top))], SAFETY,
                     max_boxes=WORK)
        assert hit.status is Status.VIOLATED


@pytest.mark.parametrize("same_sizes", [True, False])
def test_bounds_through_n2_are_sound_bounds_of_n1_and_tighten_with_the_box(same_sizes):
    """N2's bound plus the certified bound of N1 - N2 bounds N1's rows: below N1's values at
    every sampled point, for the differential engine (same sizes) and the merged network's
    CROWN (a smaller N2) alike; the gap to N1's true minimum shrinks as the box does."""
    rng = np.random.default_rng(7)
    n1 = random_network([3, 12, 12, 2], rng)
    n2 = (Network.from_weights([layer.weight * 1.02 for layer in n1.layers],
                               [layer.bias for layer in n1.layers]) if same_sizes
          else random_network([3, 6, 2], rng))
    via = through(n1, n2)
    assert via.n_outputs == 2 and via.focusable is not same_sizes
    a = rng.normal(size=(3, 2))
    gaps = []
    for r in (1.0, 0.1, 0.01):
        lo, hi = -r * np.ones((1, 3)) + 0.3, r * np.ones((1, 3)) + 0.3
        low, slope = via.rows(lo, hi, a)
        assert low.shape == (1, 3) and slope.shape == (1, 3, 3)
        x = rng.uniform(lo[0], hi[0], size=(20000, 3))
        seen = (n1.forward(x) @ a.T).min(axis=0)  # N1's rows, not N2's
        assert np.all(low[0] <= seen)
        gaps.append(float(np.max(seen - low[0])))
    assert gaps[2] < gaps[1] < gaps[0]
    assert via.clock["n2"] > 0 and via.clock["eps"] > 0
    np.testing.assert_array_equal(via.forward(x), n1.forward(x))


def test_split_merged_gives_back_the_pair():
    rng = np.random.default_rng(2)
    n1, n2 = random_network([3, 8, 8, 8, 2], rng), random_network([3, 5, 2], rng)
    x = rng.uniform(-1, 1, (500, 3))
    for outputs in ("all", "diff"):
        merged = merge_networks(n1, n2, outputs)
        a, b = split_merged(merged.network, merged.blocks, 2, outputs)
        np.testing.assert_allclose(a.forward(x) - b.forward(x), n1.forward(x) - n2.forward(x),
                                   atol=1e-12)
        if outputs == "all":
            np.testing.assert_allclose(a.forward(x), n1.forward(x), atol=1e-12)


@pytest.mark.parametrize("status", ["holds", "violated"])
def test_bounds_verifier_on_a_merged_file_uses_the_pair(tmp_path, status):
    rng = np.random.default_rng(3)
    n1 = random_network([2, 12, 12, 1], rng)
    n2 = Network.from_weights([layer.weight * 1.01 for layer in n1.layers],
                              [layer.bias for layer in n1.layers])
    p1 = save(network_to_model(n1), tmp_path / "n1.onnx")
    p2 = save(network_to_model(n2), tmp_path / "n2.onnx")
    merged = save(merge_files(p1, p2), tmp_path / "m.onnx")
    assert merged_blocks(onnx.load(str(merged))) == ((12, 12), (12, 12))
    box = Box([-1.0, -1.0], [1.0, 1.0])
    x = box.sample(100000, rng)
    d = n1.forward(x) - n2.forward(x)
    sign = 1 if d.max() >= -d.min() else -1
    top = float((sign * d).max())
    t = 3 * top + 1e-4 if status == "holds" else 0.3 * top
    prop = tmp_path / "p.vnnlib"
    write_vnnlib1(violation_property(InputSet.of(box), 1, 0, sign, t), prop)
    verdict = get_verifier("bounds").check(merged, prop, 30)
    expected = Status.HOLDS if status == "holds" else Status.VIOLATED
    assert verdict.status is expected, verdict.message
    if expected is Status.VIOLATED:
        assert verdict.counterexample is not None and box.contains(verdict.counterexample)


def test_a_two_network_row_gets_the_differential_bounds():
    # Y_f - Y_g as a two-network query states it ([y1; y2] layout) must be bounded as tightly
    # as the difference itself, not as y1 and -y2 bounded apart
    rng = np.random.default_rng(4)
    n1 = random_network([3, 20, 20, 2], rng)
    n2 = round_weights(n1)
    lo, hi = np.full((1, 3), -1.0), np.full((1, 3), 1.0)
    stacked, diff = pair(n1, n2, "stacked"), pair(n1, n2, "diff")
    a_st = np.array([[1.0, 0.0, -1.0, 0.0]])
    low_st, _ = stacked.rows(lo, hi, a_st)
    low_d, _ = diff.rows(lo, hi, np.array([[1.0, 0.0]]))
    assert np.allclose(low_st, low_d, rtol=1e-9, atol=1e-15)
    x = rng.uniform(-1, 1, size=(20000, 3))
    assert low_st.min() <= (n1.forward(x) - n2.forward(x))[:, 0].min()



def test_a_decision_goes_on_from_where_an_earlier_one_stopped():
    """Resumed from open boxes (here the four quadrants of the box, with no bound known yet),
    a decision searches only them: it proves what a fresh decision proves, finds what it
    finds, trusts that what lies outside them was proved (a quadrant left out is not looked
    at), and hands back what it leaves open."""
    from nnbisim.search.bab_types import OpenBoxes
    from nnbisim.search.decide import DecideOptions, resume_key

    def keyed(boxes: OpenBoxes, case: SpecCase) -> OpenBoxes:
        """Hand-made open boxes (nothing proved) stamped for ``case``'s search."""
        return replace(boxes, key=resume_key(subject, case, DecideOptions()))

    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    y = net.forward(g)[:, 0]
    top, arg = float(y.max()), g[int(np.argmax(y))]
    lo = np.array([[-1.0, -1.0], [0.0, -1.0], [-1.0, 0.0], [0.0, 0.0]])
    quads = OpenBoxes(lo, lo + 1.0, np.full((4, 1), np.inf), None, np.full(1, -np.inf))
    subject = single(net)
    above = SpecCase(box, at_least(1, 0, top + 0.01))
    held = decide(subject, [above], SAFETY, resume=[keyed(quads, above)], max_boxes=WORK)
    assert held.status is Status.HOLDS and held.problems[0].resumed
    assert len(held.left[0]) == 0
    hit_case = SpecCase(box, at_least(1, 0, top - 0.01))
    hit = decide(subject, [hit_case], SAFETY, resume=[keyed(quads, hit_case)], max_boxes=WORK)
    assert hit.status is Status.VIOLATED and float(net.forward(hit.x)[0]) >= top - 0.01
    # the quadrant holding the maximum left out: taken as proved, so the rest holds unless
    # another quadrant comes within 0.01 of the top
    peak = np.all((lo <= arg) & (arg <= lo + 1.0), axis=1)
    rest = OpenBoxes(lo[~peak], lo[~peak] + 1.0, np.full((int((~peak).sum()), 1), np.inf),
                     None, np.full(1, -np.inf))
    others = y[~np.any(np.all((g[:, None] >= lo[peak][None]) & (g[:, None] <= lo[peak][None]
                                                              + 1.0), -1), 1)].max()
    assert others < top - 1e-3  # (seed 0: the peak stands out)
    between = SpecCase(box, at_least(1, 0, (others + top) / 2))
    assert decide(subject, [between], SAFETY, max_boxes=WORK).status is Status.VIOLATED
    assert decide(subject, [between], SAFETY, resume=[keyed(rest, between)],
                  max_boxes=WORK).status is Status.HOLDS
    # nothing open: proved at once, without a search; a part of the open set cut to a box
    done = decide(subject, [above], 0.0, resume=[held.left[0]])
    assert done.status is Status.HOLDS and done.problems[0].boxes == 0
    half = quads.within(np.array([0.0, -1.0]), np.array([1.0, 1.0]))
    assert len(half) == 2 and np.all(half.lo[:, 0] == 0.0)
    # what was proved for one unsafe set, or one network, is no proof for another: refused
    with pytest.raises(ValueError, match="another function or unsafe set"):
        decide(subject, [hit_case], SAFETY, resume=[held.left[0]])  # proved at top + 0.01
    other = single(random_network([2, 10, 10, 1], rng))
    with pytest.raises(ValueError, match="another function or unsafe set"):
        decide(other, [above], SAFETY, resume=[held.left[0]])
    with pytest.raises(ValueError, match="another function or unsafe set"):
        decide(subject, [above], SAFETY, resume=[quads])  # no key: made by hand, unstamped


def _crossing() -> Network:
    """x in [-1, 1] -> (0, x, -x), through two ReLUs that stay active there."""
    return Network.from_weights([np.array([[1.0], [-1.0]]), np.array([[0.0, 0.0], [1.0, 0.0],
                                                                       [0.0, 1.0]])],
                                [np.array([1.0, 1.0]), np.array([0.0, -1.0, -1.0])])


def test_sums_of_rows_prove_a_box_where_the_winning_row_changes():
    """Unsafe: y1 <= y0 - 0.1 and y2 <= y0 - 0.1, i.e. x <= -0.1 and x >= 0.1: empty. Each row
    alone is satisfiable on half the box, so bounding rows one by one needs splits; the sum of
    the two rows is -0.2 everywhere and proves the whole box at once."""
    from nnbisim.search.margins import Margins as _Margins
    from nnbisim.search.margins import exact_sum as _exact_sum

    assert _exact_sum(np.array([[0.1], [0.2]])) is None  # 0.1 + 0.2 rounds: not used
    assert _exact_sum(np.array([[1.0, -1.0], [0.5, 1.0]])).tolist() == [1.5, 0.0]
    unsafe = OutputConstraint((Polytope(np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]),
                                        [-0.1, -0.1]),))
    subject = single(_crossing())
    lo, hi = np.array([[-1.0]]), np.array([[1.0]])
    alone = _Margins(subject, unsafe.disjuncts, combine=False).bound(lo, hi).upper
    summed = _Margins(subject, unsafe.disjuncts).bound(lo, hi).upper
    assert alone[0, 0] > 0.5 and summed[0, 0] == pytest.approx(-0.1, abs=1e-9)
    box = Box([-1.0], [1.0])
    d1 = decide(subject, [SpecCase(box, unsafe)], SAFETY, max_boxes=WORK)
    d0 = decide(subject, [SpecCase(box, unsafe)], SAFETY, options=DecideOptions(combine=False),
                max_boxes=WORK)
    assert d1.status is Status.HOLDS and d0.status is Status.HOLDS
    assert d1.problems[0].boxes < d0.problems[0].boxes


def test_sums_of_rows_stay_sound_bounds_of_the_margin():
    """Random networks and random polytopes of 2-6 rows: the bound with sums of rows is never
    below a sampled margin, and never above the bound of the rows alone."""
    from nnbisim.search.margins import Margins as _Margins

    rng = np.random.default_rng(5)
    tighter = 0
    for trial in range(6):
        net = random_network([3, 12, 12, 4], rng)
        # small integer rows and rhs in eighths: their sums are exact, so they are all used
        polys = tuple(Polytope(rng.integers(-3, 4, (r, 4)).astype(float),
                               rng.integers(-8, 9, r) / 8.0) for r in (2 + trial % 5, 3))
        subject = single(net)
        lo = rng.uniform(-1, 0, (20, 3))
        hi = lo + rng.uniform(0.05, 1.0, (20, 3))
        with_sums = _Margins(subject, polys).bound(lo, hi).upper
        alone = _Margins(subject, polys, combine=False).bound(lo, hi).upper
        focused = _Margins(subject, polys).sharp(lo, hi).upper
        # (the single rows' bounds agree up to the summation order of a batched product)
        assert np.all(with_sums <= alone + 1e-12 * (1 + np.abs(alone)))
        assert np.all(focused <= with_sums)  # the optimised row keeps the better bound
        tighter += int(np.sum(with_sums < alone - 1e-9))
        for b in range(len(lo)):
            x = rng.uniform(lo[b], hi[b], (4000, 3))
            seen = _Margins(subject, polys).value(x).max(axis=0)
            assert np.all(seen <= focused[b] + 1e-12)
    assert tighter > 0


def test_every_climb_counts_for_every_unsafe_polytope(acas_dir):
    """ACAS Xu 2_1 against its float16 copy on property 1's box, unsafe ``|y1 - y2|_i >= t``
    (ten one-row polytopes): the witness search reaches (y1 - y2)_0 = 0.002866 (found by
    ``nnbisim epsilon`` too), but only from a climb aimed at another polytope; with each
    polytope judged by its own climbs alone it stopped at 0.00215."""
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.specs.io import read_spec_cases

    n1 = load_network(acas_net(2, 1))
    n2 = round_weights(n1)
    box = read_spec_cases(acas_dir / "prop_1.vnnlib")[0].box
    t = 0.0025
    rows = [Polytope(np.concatenate([-s * np.eye(5)[i], s * np.eye(5)[i]]), [-t])
            for i in range(5) for s in (1, -1)]
    d = decide(pair(n1, n2, "stacked"),
               [SpecCase(box, OutputConstraint(tuple(rows)))], 60, DecideOptions(probe=0))
    assert d.status is Status.VIOLATED and d.problems[0].how == "witness"
    y = n1.forward(d.x[None]) - n2.forward(d.x[None])
    assert y[0, 0] >= t and box.contains(d.x)


def test_branch_and_bound_samples_its_open_boxes_for_counterexamples(acas_dir):
    """ACAS Xu 5_3 violates property 2 only in a sliver: the witness search's 200,000 samples
    of the box stop at margin -4e-6, and branch and bound climbing from its best boxes' centres
    alone was still open after 60 s. Points drawn from the boxes it has left open find one
    (replayed in onnxruntime by the verifier plug-in) within seconds."""
    model, prop = acas_net(5, 3), acas_dir / "prop_2.vnnlib"
    v = get_verifier("bounds").check(model, prop, 60)
    assert v.status is Status.VIOLATED, v.message
    assert v.counterexample is not None and v.message == "box 0: found"  # by the search


def test_the_witness_climbs_stop_at_their_deadline():
    net = random_network([3, 16, 16, 2], np.random.default_rng(3))
    polys = (Polytope(np.array([[1.0, -1.0]]), [0.0]), Polytope(np.array([[-1.0, 1.0]]), [0.0]))
    m = Margins(single(net), polys)
    box = Box([-1.0] * 3, [1.0] * 3)

    def run(steps, deadline):
        return falsify(m, box, np.random.default_rng(0), 256, 8, steps, deadline)
    past = run(100, 0.0)  # a deadline already gone: one step of each climb, then stop
    for a, b in zip(past, run(1, None), strict=True):
        assert np.array_equal(a, b)
    longer = run(100, None)
    assert np.all(longer[0] >= past[0])  # more steps never lose ground


def test_an_easy_case_is_proved_before_any_witness_search(monkeypatch):
    """A fresh case is first bounded for a few boxes (DecideOptions.probe): far above the
    maximum, one box proves it and no point is ever sampled; just above it, the probe leaves
    boxes open, the witness search runs, and the branch and bound goes on from the probe's
    boxes: the same answer as searching first, with the probe's boxes counted in the work."""
    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    top = float(net.forward(g).max())
    drawn = []
    sample = Box.sample
    monkeypatch.setattr(Box, "sample", lambda self, n, r: drawn.append(n) or sample(self, n, r))
    subject = single(net)
    far = decide(subject, [SpecCase(box, at_least(1, 0, top + 100.0))], SAFETY, max_boxes=WORK)
    assert far.status is Status.HOLDS and drawn == []
    assert far.problems[0].how == "bab" and far.problems[0].boxes == 1
    near = SpecCase(box, at_least(1, 0, top + 0.01))
    now = DecideOptions(probe=8, search_after=0.0)  # the full search right after the probe
    probed = decide(subject, [near], SAFETY, now, max_boxes=WORK)
    assert probed.status is Status.HOLDS and len(drawn) == 1  # the search ran once
    assert 8 < probed.boxes <= WORK
    first = decide(subject, [near], SAFETY, DecideOptions(probe=0), max_boxes=WORK)
    assert first.status is Status.HOLDS
    # a work limit bounds the probe's boxes and the rest together
    cut = decide(subject, [near], SAFETY, now, max_boxes=12)
    assert cut.status is Status.TIMEOUT and cut.boxes <= 12


def test_more_branch_and_bound_before_the_full_witness_search(monkeypatch):
    """Where the probe proves nothing, a quick search (an eighth of the samples) and a longer
    branch and bound (DecideOptions.search_after) come before the full witness search: a case
    they prove never draws the full search's samples; the answer and the work limit are those
    of searching in full first."""
    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 801)] * 2), -1).reshape(-1, 2)
    near = SpecCase(box, at_least(1, 0, float(net.forward(g).max()) + 0.01))
    drawn: list[int] = []
    sample = Box.sample
    monkeypatch.setattr(Box, "sample", lambda self, n, r: drawn.append(n) or sample(self, n, r))
    opts = DecideOptions(probe=8)
    full = opts.samples_for(2)
    staged = decide(single(net), [near], SAFETY, opts, max_boxes=WORK)
    assert staged.status is Status.HOLDS and drawn == [round(QUICK_SAMPLES * full)]  # quick
    record = staged.problems[0]
    assert record.how == "bab" and 8 < record.boxes == staged.boxes <= WORK
    drawn.clear()
    first = decide(single(net), [near], SAFETY, replace(opts, search_after=0.0),
                   max_boxes=WORK)
    assert first.status is Status.HOLDS and drawn == [full]
    cut = decide(single(net), [near], SAFETY, opts, max_boxes=12)
    assert cut.status is Status.TIMEOUT and cut.boxes <= 12


def test_a_probe_may_meet_the_violation_itself():
    """A violation the probe's branch and bound meets (its boxes' points, its polish) ends the
    decision there, before any witness search."""
    rng = np.random.default_rng(0)
    net = random_network([2, 10, 10, 1], rng)
    box = Box([-1.0, -1.0], [1.0, 1.0])
    low = float(net.forward(box.center[None])[0, 0]) - 1.0  # the centre already exceeds it
    hit = decide(single(net), [SpecCase(box, at_least(1, 0, low))], SAFETY, max_boxes=WORK)
    assert hit.status is Status.VIOLATED and hit.problems[0].how == "bab"
    assert float(net.forward(hit.x[None])[0, 0]) >= low


def test_the_witness_search_ranks_samples_in_float32_and_values_in_float64(acas_dir):
    """``forward32`` (the samples' ranking) agrees with ``forward`` to float32 precision, and
    the margins a witness search reports are float64 values at its points."""
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.specs.io import read_spec_cases

    n1 = load_network(acas_net(1, 1))
    n2 = round_weights(n1)
    x = read_spec_cases(acas_dir / "prop_1.vnnlib")[0].box.sample(1000, np.random.default_rng(0))
    y, y32 = n1.forward(x), n1.forward32(x)
    assert y32.dtype == np.float32 and np.allclose(y32, y, rtol=1e-5, atol=1e-5 * abs(y).max())
    case = SpecCase(read_spec_cases(acas_dir / "prop_1.vnnlib")[0].box, at_least(5, 0, 1e9))
    m = Margins(pair(n1, n2, "diff"), case.unsafe.disjuncts)
    g, at = falsify(m, case.box, np.random.default_rng(0), 2000, 4, 5)
    assert np.array_equal(g, m.value(at)[np.arange(len(g)), np.arange(len(g))])
