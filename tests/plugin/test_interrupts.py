"""Ctrl-C on a real command: the run ends at once, writes what it has, exits 130; no process
it started outlives it. A result file from an earlier run never survives the run replacing it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import acas_net

from nnbisim.cli.main import main

NNBISIM = [sys.executable, "-m", "nnbisim.cli"]


def _float16_copy(tmp_path: Path) -> Path:
    n2 = tmp_path / "n2.onnx"
    assert main(["compress", str(acas_net(1, 1)), "--method", "float16", "-o", str(n2)]) == 0
    return n2


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


@contextmanager
def _epsilon(n2: Path, acas_dir: Path, *options: str) -> Iterator[subprocess.Popen]:
    """``nnbisim epsilon`` of ACAS Xu 1_1 against ``n2`` over property 1 with Marabou, in its
    own process group, killed whole if the test leaves it running."""
    proc = subprocess.Popen(
        [*NNBISIM, "epsilon", str(acas_net(1, 1)), str(n2), "--input",
         str(acas_dir / "prop_1.vnnlib"), "--verifier", "marabou", *options],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_for(proc: subprocess.Popen, text: str, seconds: float = 120.0) -> str:
    """Stderr lines of ``proc`` up to the first holding ``text``."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    proc.kill()
    pytest.fail(f"never saw {text!r}: {''.join(seen)[-2000:]}")


@pytest.mark.marabou
def test_ctrl_c_during_bisection_writes_the_json_and_leaves_no_marabou(tmp_path, acas_dir):
    n2 = _float16_copy(tmp_path)
    out = tmp_path / "eps.json"
    out.write_text('{"certified": 0.0, "from": "an earlier run"}')
    with _epsilon(n2, acas_dir, "--time-budget", "40", "--query-timeout", "300", "--json",
                  str(out), "--force") as proc:
        _wait_for(proc, "marabou: bisecting")
        before = json.loads(out.read_text())
        time.sleep(1.0)  # a Marabou query under way
        workers = _children(proc.pid)
        assert workers, "a Marabou query should be running"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 130
    assert before.get("from") != "an earlier run"  # replaced when the run started
    rep = json.loads(out.read_text())
    assert rep.get("finished", True) and rep["eps"]["certified"] >= rep["eps"]["witnessed"] > 0
    assert any("interrupted" in n for n in rep["notes"])
    assert all(not Path(f"/proc/{w}").exists() or _is_zombie(w) for w in workers)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_ctrl_c_during_branch_and_bound_starts_no_further_stage(tmp_path, acas_dir):
    n2 = _float16_copy(tmp_path)
    out = tmp_path / "eps.json"
    with _epsilon(n2, acas_dir, "--time-budget", "600", "--json", str(out)) as proc:
        _wait_for(proc, "boxes bounded")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 130
    rep = json.loads(out.read_text())
    assert rep["queries"] == []  # Marabou's bisection never started
    assert rep["searches"][0]["reason"] == "interrupted"
    assert rep["eps"]["certified"] >= rep["eps"]["witnessed"] > 0


TOOL = Path(__file__).resolve().parents[2] / "vnncomp"


def _instance(acas_dir: Path) -> tuple[Path, Path]:
    """ACAS Xu 1_1 with property 3's box and its unsafe set: unsat, decided in seconds."""
    return acas_net(1, 1), acas_dir / "prop_3.vnnlib"


def test_vnncomp_run_exit_codes_say_the_answer(tmp_path, acas_dir):
    net, prop = _instance(acas_dir)
    result = tmp_path / "r.txt"
    assert main(["vnncomp", "run", str(net), str(prop), str(result), "30"]) == 0
    assert result.read_text().split()[0] == "unsat"
    # the same box with an unsafe set every output reaches: sat
    sat = tmp_path / "sat.vnnlib"
    sat.write_text(prop.read_text().split("; Unsafe")[0] + "(assert (<= Y_0 1000000.0))\n")
    assert main(["vnncomp", "run", str(net), str(sat), str(result), "30"]) == 1
    assert result.read_text().split()[0] == "sat"


def test_a_killed_run_never_leaves_an_earlier_answer(tmp_path, acas_dir):
    """run_instance.sh removes the result file first; nnbisim marks it unknown as soon as the
    instance is read: kill -9 of the whole group at any moment leaves no stale sat."""
    net, prop = _instance(acas_dir)
    result = tmp_path / "r.txt"
    for wait in (0.2, 3.0):
        result.write_text("sat\n(X_0 1.0)\n")  # an earlier run's answer
        env = {**os.environ, "NNBISIM_PYTHON": sys.executable}
        proc = subprocess.Popen(["bash", str(TOOL / "run_instance.sh"), "v1", "c", str(net),
                                 str(prop), str(result), "60"], env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(wait)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not result.exists() or result.read_text().split()[0] in ("unknown", "unsat")
