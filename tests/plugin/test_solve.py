"""``vnncomp solve``: a generated benchmark answered on the pool and on Ray with the same
verdicts, through any tool's scripts, scored against expected.csv, resumed after Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import acas_net

from nnbisim.adapters.executor import Executor
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.results import assignment_2_0, counterexample_1_0
from nnbisim.vnncomp.benchmark import Pair, Running, acasxu_pairs, write_benchmark
from nnbisim.vnncomp.formats import PARTIAL, read_instances, resumable, write_instances
from nnbisim.vnncomp.score import check_counterexample, judge
from nnbisim.vnncomp.solve import SolveOptions, read_rows, solve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("solve")
    pairs = acasxu_pairs(acas_net(1, 1).parent, root / "nets", ["1_1"], [3, 4], "float16")
    return write_benchmark(pairs, root / "b", seed=0, timeout=20, eps_budget=5)


def _verdicts(rows: list[dict]) -> dict:
    return {(r["onnx"], r["vnnlib"]): r["result"] for r in rows}


def test_the_pool_and_ray_answer_alike_and_every_answer_is_correct(bench, tmp_path):
    pytest.importorskip("ray")
    folder = bench / "2.0"
    pool = solve(folder, tmp_path / "pool.csv", Executor(workers=2))
    ray = solve(folder, tmp_path / "ray.csv", Executor(workers=2, ray="local"))
    n = len(read_instances(folder / "instances.csv"))
    for out in (pool, ray):
        assert out["summary"]["instances"] == n and out["summary"]["score"] == 10 * n
        assert all(r["replays"] == "yes" for r in out["rows"] if r["result"] == "sat")
    assert _verdicts(pool["rows"]) == _verdicts(ray["rows"])
    # a rerun finds every instance done and runs none
    again = solve(folder, tmp_path / "pool.csv", Executor(workers=1))
    assert again["rows"] == pool["rows"]


def _subset(bench: Path, out: Path, lines: list[int]) -> Path:
    """A folder with some of the 1.0 instances (absolute paths) and their expected answers."""
    out.mkdir()
    insts = [i for i in read_instances(bench / "instances.csv") if i.line in lines]
    rows = [(str(i.networks[0][1]), str(i.vnnlib), i.timeout) for i in insts]
    write_instances(out / "instances.csv", rows)
    expected = {r[1]: r[2] for r in csv.reader((bench / "expected.csv").open())}
    with (out / "expected.csv").open("w", newline="") as f:
        for i, (net, prop, _) in zip(insts, rows, strict=True):
            rel = os.path.relpath(i.vnnlib, bench)
            csv.writer(f).writerow([net, prop, expected[rel]])
    return out


def test_any_tools_scripts_answer_through_the_same_executor(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("NNBISIM_PYTHON", sys.executable)  # the tool scripts' interpreter
    folder = _subset(bench, tmp_path / "sub", [1, 2])
    out = solve(folder, tmp_path / "r.csv", Executor(workers=2),
                SolveOptions(tool=str(REPO / "vnncomp")))
    assert {r["judgement"] for r in out["rows"]} == {"correct"}
    assert {r["expected"] for r in out["rows"]} == {"sat", "unsat"}


def test_a_sat_whose_counterexample_does_not_replay_is_penalised(bench):
    unsat = [i for i in read_instances(bench / "instances.csv") if "unsat" in i.vnnlib.name][0]
    box = read_spec_cases(unsat.vnnlib)[0].box
    y = np.zeros(5)
    assert "does not" in check_counterexample(unsat, "sat\n" + counterexample_1_0(box.lower, y)) \
        or "did not replay" in check_counterexample(unsat, "sat\n"
                                                    + counterexample_1_0(box.lower, y))
    assert "outside" in check_counterexample(unsat, "sat\n" + counterexample_1_0(box.lower - 1,
                                                                                 y))
    two = [i for i in read_instances(bench / "2.0" / "instances.csv")
           if "unsat" in i.vnnlib.name][0]
    x = box.lower
    text = "sat\n" + assignment_2_0([("X_f", "float32", (1, 5), x), ("X_g", "float32", (1, 5),
                                     x + 0.01), ("Y_f", "float32", (1, 5), y),
                                     ("Y_g", "float32", (1, 5), y)])
    assert "differ" in check_counterexample(two, text)
    assert judge("sat", 1.0, 20, "unsat", False).points == -150
    assert judge("sat", 1.0, 20, "sat", False).judgement == "invalid"
    assert judge("unsat", 1.0, 20, "sat", None).points == -150
    assert judge("unsat", 25.0, 20, "unsat", None).judgement == "late"
    assert judge("timeout", 20.0, 20, "unsat", None).points == 0


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnbisim.cli", "vnncomp", "solve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_keeps_what_finished_and_a_rerun_resumes(bench, tmp_path):
    folder, results = bench / "2.0", tmp_path / "r.csv"
    proc = _cli(str(folder), "--results", str(results), "--workers", "1")
    deadline = time.monotonic() + 240
    while len(read_rows(results)) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    first = read_rows(results)
    n = len(read_instances(folder / "instances.csv"))
    assert proc.returncode == 130, err
    assert 1 <= len(first) < n
    proc = _cli(str(folder), "--results", str(results), "--workers", "2", "--quiet")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = read_rows(results)
    assert rows[:len(first)] == first  # kept as they were
    assert len({(r["onnx"], r["vnnlib"]) for r in rows}) == len(rows) == n
    assert f"{n} of {n} instances answered; score {10 * n}" in out


def test_bad_input_is_one_line_before_any_work(bench, tmp_path):
    proc = _cli(str(tmp_path), "--results", str(tmp_path / "r.csv"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "has no instances.csv" in err and len(err.splitlines()) == 1
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    shutil.copy(other, tmp_path / "keep.csv")
    proc = _cli(str(bench), "--results", str(other))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not a results file" in err
    assert other.read_text() == (tmp_path / "keep.csv").read_text()  # nothing overwritten


def test_a_benchmark_written_on_workers_keeps_its_pairs_and_resumes(tmp_path):
    good = acasxu_pairs(acas_net(1, 1).parent, tmp_path / "nets", ["1_1"], [3, 4], "float16")
    same = Pair(good[0].n1, good[0].n1, good[0].region)  # no difference: no sat instance
    out, said = tmp_path / "b", []
    with pytest.raises(InputError, match=r"pair 2 .*do not differ.*1 other pairs are kept"):
        write_benchmark([good[0], same], out, eps_budget=5,
                        running=Running(Executor(workers=2), said.append))
    assert resumable(out) and not (out / "benchmark.json").exists()
    kept = json.loads((out / PARTIAL).read_text().splitlines()[0])["record"]
    with pytest.raises(OverwriteError):  # another folder's leftovers are not resumed
        write_benchmark(good, tmp_path / "nets", eps_budget=5)
    write_benchmark(good, out, eps_budget=5, running=Running(Executor(workers=2), said.append))
    assert "resuming: 1 of 2 pairs already done" in said
    info = json.loads((out / "benchmark.json").read_text())
    assert info["pairs"][0] == kept  # taken over, not recomputed
    assert [p["pair"] for p in info["pairs"]] == [0, 1] and not (out / PARTIAL).exists()
    assert len(read_instances(out / "instances.csv")) == 4
