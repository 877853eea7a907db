"""The plug-in interface: registry, VNN-COMP tool directories, replay of every violation."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from netbuild import matmul_add_model, save

from nnbisim.adapters.marabou import MarabouVerifier
from nnbisim.adapters.replay import confirm_violation
from nnbisim.core.errors import InputError
from nnbisim.core.model import Network
from nnbisim.core.verdict import Status, Verdict, Verifier
from nnbisim.specs.results import parse_vnncomp_result
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, Polytope, Property, SpecCase
from nnbisim.verifiers.registry import ReplayChecked, available_verifiers, get_verifier
from nnbisim.verifiers.vnncomp_tool import VnncompVerifier

# y = relu(x0 + x1) + 2 relu(x0 - x1) + relu(-x0) + 0.5: y(1, -1) = 4.5, y(-1, -1) = 1.5
TINY = Network.from_weights([[[1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]], [[1.0, 2.0, 1.0]]],
                            [[0.0, 0.0, 0.0], [0.5]], (1, 2))
Y_AT_LEAST_4 = Property(InputSet.of(Box([-1.0, -1.0], [1.0, 1.0])),
                        OutputConstraint((Polytope([[-1.0]], [-4.0]),)), 1)
PROPERTY_TEXT = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                 "(assert (>= X_0 -1))\n(assert (<= X_0 1))\n(assert (>= X_1 -1))\n"
                 "(assert (<= X_1 1))\n(assert (>= Y_0 4))\n")


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    prop = tmp_path / "p.vnnlib"
    prop.write_text(PROPERTY_TEXT)
    return save(matmul_add_model(TINY, (1, 2)), tmp_path / "tiny.onnx"), prop


def fake_tool(root: Path, answer: str, work: str = "") -> Path:
    """A VNN-COMP tool directory whose run_instance.sh writes ``answer`` to its result file."""
    tool = root / "tool"
    tool.mkdir()
    (tool / "prepare_instance.sh").write_text('#!/bin/bash\necho "$@" > prepared.txt\n')
    (tool / "run_instance.sh").write_text(
        f"#!/bin/bash\n{work}\ncat > \"$5\" <<'END'\n{answer}\nEND\n")
    return tool


def sat(x: list[float]) -> str:
    return "sat\n(" + "\n".join(f"(X_{i} {v!r})" for i, v in enumerate(x)) + "\n(Y_0 9.0))"


@pytest.mark.parametrize("text, status, x", [
    ("unsat\n", Status.HOLDS, None),
    ("holds", Status.HOLDS, None),
    ("TIMEOUT\n", Status.TIMEOUT, None),
    ("unknown", Status.UNKNOWN, None),
    ("error\nout of memory", Status.ERROR, None),
    ("", Status.ERROR, None),
    ("banana", Status.ERROR, None),
    ("sat\n((X_0 1.0)\n (X_1 -1e0)\n (Y_0 4.5))", Status.VIOLATED, [1.0, -1.0]),
    ("violated ((X_0 0.25) (X_1 0.5))", Status.VIOLATED, [0.25, 0.5]),
    ("sat\n((X_1 1.0))", Status.VIOLATED, None),
    ("sat", Status.VIOLATED, None),
])
def test_parse_vnncomp_result(text, status, x):
    got_status, got_x, _ = parse_vnncomp_result(text)
    assert got_status is status
    assert (got_x is None) if x is None else np.array_equal(got_x, x)


def test_vnncomp_unsat_holds_and_prepare_gets_the_instance(tmp_path, files):
    tool = fake_tool(tmp_path, "unsat")
    verdict = get_verifier(f"vnncomp:{tool}").check(*files, 5)
    assert verdict.status is Status.HOLDS and verdict.verifier == f"vnncomp:{tool}"
    args = (tool / "prepared.txt").read_text().split()
    assert args == ["v1", "nnbisim", str(files[0].resolve()), str(files[1].resolve())]


def test_vnncomp_sat_with_a_real_counterexample_is_violated(tmp_path, files):
    verifier = VnncompVerifier(fake_tool(tmp_path, sat([1.0, -1.0])), reader=lambda _: Y_AT_LEAST_4)
    verdict = verifier.check(*files, 5)
    assert verdict.status is Status.VIOLATED, verdict.message
    np.testing.assert_allclose(verdict.output, [4.5], atol=1e-6)


def test_vnncomp_sat_with_a_wrong_counterexample_is_unknown(tmp_path, files):
    tool = fake_tool(tmp_path, sat([-1.0, -1.0]))
    verifier = VnncompVerifier(tool, reader=lambda _: Y_AT_LEAST_4)
    verdict = verifier.check(*files, 5)
    assert verdict.status is Status.UNKNOWN
    assert "did not replay" in verdict.message
    assert verdict.output is None


def test_vnncomp_overrun_is_killed_with_everything_it_started(tmp_path, files):
    """A tool that would run 30 s (and then answer unsat) is stopped at its 0.1 s timeout:
    the verdict is TIMEOUT, not the unsat it never wrote, and its child is gone. The elapsed
    time is only checked against the 30 s the tool would have taken, a margin no load
    reaches."""
    tool = fake_tool(tmp_path, "unsat", work="sleep 30 & echo $! > sleeper.txt\nwait")
    start = time.perf_counter()
    verdict = VnncompVerifier(tool, grace=0.5).check(*files, 0.1)
    assert verdict.status is Status.TIMEOUT
    assert time.perf_counter() - start < 20.0
    stat = Path(f"/proc/{(tool / 'sleeper.txt').read_text().strip()}/stat")
    for _ in range(50):  # the orphaned sleep is reaped by init shortly after the kill
        if not stat.exists() or stat.read_text().split()[2] == "Z":
            break
        time.sleep(0.02)
    assert not stat.exists() or stat.read_text().split()[2] == "Z"


def test_vnncomp_without_a_result_file_is_an_error(tmp_path, files):
    tool = tmp_path / "tool"
    tool.mkdir()
    (tool / "run_instance.sh").write_text("echo crashed >&2\nexit 3\n")
    verdict = VnncompVerifier(tool).check(*files, 5)
    assert verdict.status is Status.ERROR and "crashed" in verdict.message


def test_vnncomp_directory_without_scripts_is_refused(tmp_path):
    with pytest.raises(InputError, match="run_instance.sh"):
        get_verifier(f"vnncomp:{tmp_path}")


def test_confirm_violation_checks_the_input_set_and_clips_within_tolerance(tmp_path, files):
    model = files[0]
    claim = Verdict(Status.VIOLATED, "tool", counterexample=np.array([2.0, -1.0]))
    outside = confirm_violation(claim, model, Y_AT_LEAST_4)
    assert outside.status is Status.UNKNOWN and "outside the input set" in outside.message
    nearly = dataclasses.replace(claim, counterexample=np.array([1.0 + 1e-9, -1.0]))
    clipped = confirm_violation(nearly, model, Y_AT_LEAST_4)
    assert clipped.status is Status.VIOLATED
    assert np.array_equal(clipped.counterexample, [1.0, -1.0])
    short = dataclasses.replace(claim, counterexample=np.array([1.0]))
    assert confirm_violation(short, model, Y_AT_LEAST_4).status is Status.UNKNOWN
    bare = Verdict(Status.VIOLATED, "tool")
    assert confirm_violation(bare, model, Y_AT_LEAST_4).status is Status.UNKNOWN
    holds = Verdict(Status.HOLDS, "tool")
    assert confirm_violation(holds, model, Y_AT_LEAST_4) is holds


def test_each_box_is_checked_against_its_own_unsafe_set(files):
    # (1, -1) gives y = 4.5: unsafe for the left box's "y >= 4", not for the right box's "y <= 0"
    left = SpecCase(Box([0.5, -1.0], [1.0, 0.0]), OutputConstraint((Polytope([[1.0]], [0.0]),)))
    right = SpecCase(Box([-1.0, -1.0], [1.0, 1.0]), Y_AT_LEAST_4.unsafe)
    claim = Verdict(Status.VIOLATED, "tool", counterexample=np.array([1.0, -1.0]))
    assert confirm_violation(claim, files[0], [left]).status is Status.UNKNOWN
    assert confirm_violation(claim, files[0], [left, right]).status is Status.VIOLATED


def test_builtin_names():
    assert isinstance(get_verifier("marabou"), MarabouVerifier)
    assert {"marabou", "vnncomp:DIR"} <= set(available_verifiers())


PLUGIN = '''
import numpy as np
from nnbisim.core.verdict import Status, Verdict

class Fake:
    name = "fake"
    def check(self, model, prop, timeout):
        return Verdict(Status.VIOLATED, self.name, counterexample=np.array([-1.0, -1.0]))
'''


@pytest.fixture
def third_party_plugin(tmp_path, monkeypatch) -> None:
    """An installed-looking distribution declaring ``fake`` in the ``nnbisim.verifiers`` group."""
    site = tmp_path / "site"
    info = site / "fakeverif-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "fakeverif.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeverif\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nnbisim.verifiers]\nfake = fakeverif:Fake\n")
    monkeypatch.syspath_prepend(str(site))


def test_entry_point_plugins_are_found_and_their_violations_replayed(third_party_plugin, files):
    verifier = get_verifier("fake")
    assert isinstance(verifier, ReplayChecked) and isinstance(verifier, Verifier)
    assert verifier.name == "fake" and "fake" in available_verifiers()
    checked = dataclasses.replace(verifier, reader=lambda _: Y_AT_LEAST_4)
    verdict = checked.check(*files, 5)  # its counterexample gives y = 1.5, not >= 4
    assert verdict.status is Status.UNKNOWN and "did not replay" in verdict.message


def test_unknown_names_list_the_available_ones(third_party_plugin):
    with pytest.raises(InputError, match=r"unknown verifier 'nope'.*fake.*marabou.*vnncomp:DIR"):
        get_verifier("nope")
    with pytest.raises(InputError, match="tool directory"):
        get_verifier("vnncomp:")
