"""The README's main job: the built-in example runs end to end and its answers are consistent."""

from __future__ import annotations

import json

import pytest

from nnbisim.core.errors import OverwriteError
from nnbisim.tasks.demo import run_demo


@pytest.mark.marabou
def test_demo_brackets_eps_draws_the_band_and_refuses_to_overwrite(tmp_path):
    lines: list[str] = []
    out = tmp_path / "demo"
    assert run_demo(out, echo=lines.append) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n1"] == "1-50-50-50-50-50-1" and report["n2"] == "1-10-10-1"
    assert report["merge_check_max_abs"] < 1e-5
    eps = report["eps"]
    assert 0 < eps["witnessed"] <= eps["certified"] <= 1.02 * eps["witnessed"]
    assert report["all_n1_samples_inside_band"]
    assert (out / "fig2_band.png").stat().st_size > 10_000
    assert (out / "diff_inf.vnnlib").exists()
    with pytest.raises(OverwriteError):
        run_demo(out, echo=lines.append)
