"""The README's main job: the built-in example runs end to end and its answers are consistent."""

from __future__ import annotations

import json

import pytest

from nnbisim.demo import run_demo
from nnbisim.errors import OverwriteError


@pytest.mark.marabou
def test_demo_brackets_the_distance_and_refuses_to_overwrite(tmp_path):
    lines: list[str] = []
    out = tmp_path / "demo"
    assert run_demo(out, echo=lines.append) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n1"] == "1-50-50-50-50-50-1" and report["n2"] == "1-10-10-1"
    assert report["merge_check_max_abs"] < 1e-5
    below, above_pos, above_neg = report["queries"]
    assert below["status"] == "violated"
    assert abs(below["replayed_difference"]) >= below["threshold"] - 1e-6
    assert above_pos["status"] == above_neg["status"] == "holds"
    assert any("proved by Marabou" in line for line in lines)
    with pytest.raises(OverwriteError):
        run_demo(out, echo=lines.append)
