"""One decision's branch and bound on several workers (``nnbisim.search.parallel``): the same
answers as the search in one process, open boxes dealt to the workers in slices, sound when a
worker dies (its slice is run again; a piece lost for good never counts as proved). Slices are
made short here so that a small problem is cut into many; the time budgets are safety nets."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest
import units
from netbuild import random_network, save

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.onnx_write import network_to_model
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.search import parallel, parallel_max
from nnbisim.search.bab_types import BabOptions, OpenBoxes
from nnbisim.search.decide import decide
from nnbisim.search.subjects import pair
from nnbisim.specs.sets import Box, InputSet, SpecCase
from nnbisim.tasks.eps_decision import _unsafe
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions

SAFETY = 300.0


@pytest.fixture(scope="module")
def scaled():
    """A float16 copy of a random network with weights 1% larger; its largest |N1 - N2| on a
    dense grid of [-1, 1]^2."""
    rng = np.random.default_rng(5)
    n1 = random_network([2, 16, 16, 2], rng)
    n2 = Network.from_weights([layer.weight.astype(np.float16).astype(np.float64) * 1.01
                               for layer in n1.layers], [layer.bias for layer in n1.layers])
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, 401)] * 2), -1).reshape(-1, 2)
    return n1, n2, float(np.abs(n1.forward(g) - n2.forward(g)).max())


def _cases(eps: float) -> list[SpecCase]:
    return [SpecCase(Box([-1.0, -1.0], [1.0, 1.0]), _unsafe((0, 1), 2, eps))]


@pytest.fixture
def short_slices(monkeypatch):
    monkeypatch.setattr(parallel, "PRELUDE", 4)
    monkeypatch.setattr(parallel, "SLICE", 0.2)


def test_two_workers_answer_as_one_process_does(scaled, short_slices):
    n1, n2, top = scaled
    recipe = partial(pair, n1, n2, "diff")
    ex = Executor(workers=2)
    for eps, want in ((0.5 * top, Status.VIOLATED), (1.2 * top, Status.HOLDS),
                      (3.0 * top, Status.HOLDS)):
        alone = decide(recipe(), _cases(eps), SAFETY)
        spread = parallel.decide(recipe, _cases(eps), SAFETY, executor=ex)
        assert alone.status is spread.status is want, eps
        if want is Status.VIOLATED:
            x = spread.x.reshape(1, -1)
            assert np.abs(n1.forward(x) - n2.forward(x)).max() >= eps
    tight = parallel.decide(recipe, _cases(1.2 * top), SAFETY, executor=ex)
    rec = tight.problems[0]
    assert rec.slices > 1 and rec.open == 0 and tight.boxes > 0  # cut into many slices


def test_one_worker_or_a_work_limit_is_the_search_in_one_process(scaled):
    n1, n2, top = scaled
    recipe = partial(pair, n1, n2, "diff")
    alone = decide(recipe(), _cases(1.2 * top), SAFETY, max_boxes=3000)
    for ex in (Executor(workers=1), Executor(workers=2)):
        same = parallel.decide(recipe, _cases(1.2 * top), SAFETY, executor=ex, max_boxes=3000)
        assert (same.status, same.boxes) == (alone.status, alone.boxes)


def test_a_worker_killed_under_a_slice_loses_nothing(scaled, short_slices, tmp_path):
    n1, n2, top = scaled
    recipe = partial(units.pair_dying_in_workers, os.getpid(), str(tmp_path / "marker"), n1, n2)
    d = parallel.decide(recipe, _cases(1.2 * top), SAFETY, executor=Executor(workers=2))
    assert (tmp_path / "marker").exists() and d.status is Status.HOLDS


def test_a_piece_whose_workers_always_die_is_never_proved(scaled, short_slices):
    n1, n2, top = scaled
    recipe = partial(units.pair_dying_in_workers, os.getpid(), None, n1, n2)
    d = parallel.decide(recipe, _cases(1.2 * top), SAFETY, executor=Executor(workers=2))
    assert d.status is Status.TIMEOUT


def test_open_boxes_are_dealt_hard_and_easy_alike():
    lo = np.arange(10.0)[:, None] * np.ones((1, 2))
    boxes = OpenBoxes(lo, lo + 1, np.arange(10.0)[:, None], None, np.zeros(1), "k")
    parts = parallel.dealt(boxes, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(np.concatenate([p.ub[:, 0] for p in parts])) == list(range(10))
    assert [p.ub.max() for p in parts] == [9, 8, 7] and all(p.key == "k" for p in parts)


def test_eps_bracketed_on_two_workers_is_sound_and_as_tight(scaled, short_slices, tmp_path):
    n1, n2, top = scaled
    p1 = save(network_to_model(n1), tmp_path / "a.onnx")
    p2 = save(network_to_model(n2), tmp_path / "b.onnx")
    box = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))
    alone = compute_epsilon(p1, p2, box, EpsilonOptions(verifier="bounds", time_budget=60))
    spread = compute_epsilon(p1, p2, box, EpsilonOptions(verifier="bounds", time_budget=60,
                                                         workers=2))
    for rep in (alone, spread):
        assert rep.certified >= top - 1e-9 and rep.witnessed <= rep.certified
        assert rep.certified <= 1.02 * rep.witnessed  # the gap closed (1%, rounding)
    assert spread.searches[-1]["reason"] == "gap" and spread.searches[-1]["boxes"] > 0


def test_a_bracket_whose_slices_are_lost_stays_sound(scaled, short_slices):
    n1, n2, top = scaled
    box = InputSet.of(Box([-1.0, -1.0], [1.0, 1.0]))
    recipe = partial(units.eps_problem_dying_in_workers, os.getpid(), n1, n2, box)
    res = parallel_max.maximise(recipe, np.zeros(4), np.zeros((4, 2)),
                                BabOptions(time_budget=60), executor=Executor(workers=2))
    assert res.reason.value == "budget" and res.upper.max() >= top  # lost, still sound


def test_open_boxes_come_back_and_resume_either_way(scaled, short_slices):
    n1, n2, top = scaled
    recipe = partial(pair, n1, n2, "diff")
    ex, cases = Executor(workers=2), _cases(1.2 * top)
    cut = parallel.decide(recipe, cases, 1.5, executor=ex)  # may or may not finish in time
    assert len(cut.left) == 1
    if cut.status is Status.HOLDS:
        assert cut.left[0] is not None and len(cut.left[0]) == 0
    # what is left, resumed in one process, is proved: nothing proved was dropped from it
    assert decide(recipe(), cases, SAFETY, resume=cut.left).status is Status.HOLDS
    # and the other way round: a work-limited search in one process resumed on two workers
    part = decide(recipe(), cases, SAFETY, max_boxes=6)
    assert part.status is Status.TIMEOUT and len(part.left[0]) > 0
    whole = parallel.decide(recipe, cases, SAFETY, executor=ex, resume=part.left)
    assert whole.status is Status.HOLDS and len(whole.left[0]) == 0
