"""Faults (issue 26): ``kill -9`` of ``nnbisim epsilon --verifier marabou`` in the middle of a
run, on ACAS Xu 1_1 against its float16 copy. Afterwards no Marabou worker it started
survives, and its ``--json`` target is the old file, a complete new JSON, or a JSON marked as
unfinished, never a truncated file.

The run is cut by events, not by the clock: the kill comes when the first progress line is on
stderr (the own engine at work) or when a Marabou worker is running. Every process the test
starts is in a process group of its own, killed whole at the end whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import acas_net

OLD = b'{"eps": {"witnessed": 1.0, "certified": 2.0}, "note": "the run before"}\n'
APPEAR = 240.0  # seconds to wait for the moment of the kill (a worker, a progress line)
GONE = 5.0  # seconds the killed run's workers get to die


@pytest.fixture(scope="module")
def float16_copy(tmp_path_factory, acas_dir) -> Path:
    out = tmp_path_factory.mktemp("faults") / "n2_float16.onnx"
    subprocess.run([sys.executable, "-m", "nnbisim.cli", "compress", str(acas_net(1, 1)),
                    "--method", "float16", "-o", str(out)], check=True, capture_output=True)
    return out


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def workers_of(root: int) -> set[int]:
    """The processes below ``root`` that run a Marabou worker."""
    parent = {int(p): _ppid(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    below, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in below} - below
        below |= more
        grew = bool(more)
    return {p for p in below - {root} if "marabou_worker" in _cmdline(p)}


def _wait_for(what, timeout: float, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(step)
    return what()


def _start(tmp: Path, n2: Path, acas: Path) -> tuple[subprocess.Popen, Path, Path]:
    target, err = tmp / "eps.json", tmp / "stderr.txt"
    target.write_bytes(OLD)
    cmd = [sys.executable, "-m", "nnbisim.cli", "epsilon", str(acas_net(1, 1)), str(n2),
           "--input", str(acas / "prop_1.vnnlib"), "--verifier", "marabou",
           "--time-budget", "300", "--max-boxes", "40", "--query-timeout", "120",
           "--json", str(target), "--force"]
    with err.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sink,
                                start_new_session=True)
    return proc, target, err


def _cleanup(proc: subprocess.Popen, pids: set[int]) -> None:
    """Kill the run's process group and each worker's (they start sessions of their own),
    then each worker itself, and wait until they are gone."""
    for group in {proc.pid, *pids}:
        for kill in (os.killpg, os.kill):
            try:
                kill(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    proc.wait()
    _wait_for(lambda: not any(_alive(p) for p in pids), GONE)


def check_target(target: Path) -> str:
    """The --json target after the kill: the old file, or a whole JSON; which of them."""
    data = target.read_bytes()
    if data == OLD:
        return "old"
    doc = json.loads(data)  # a truncated file fails here
    assert isinstance(doc, dict), doc
    if doc.get("finished") is False:  # what the command line writes when a run starts
        return "unfinished"
    assert "eps" in doc and "outputs" in doc, doc
    return "new"


@pytest.mark.marabou
def test_kill_9_during_a_marabou_query_leaves_no_worker_and_a_whole_json(
        tmp_path, float16_copy, acas_dir):
    proc, target, err = _start(tmp_path, float16_copy, acas_dir)
    seen: set[int] = set()
    try:
        seen = _wait_for(lambda: workers_of(proc.pid) if proc.poll() is None else {-1}, APPEAR)
        assert seen and -1 not in seen, (
            f"no Marabou worker started (exit {proc.returncode}): {err.read_text()[-600:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_for(lambda: not any(_alive(p) for p in seen), GONE)
        survivors = {p for p in seen if _alive(p)}
        assert not survivors, (
            f"Marabou workers {sorted(survivors)} outlived the killed nnbisim (now children "
            f"of {[_ppid(p) for p in survivors]}): {[_cmdline(p)[:120] for p in survivors]}")
        assert check_target(target) in ("old", "new", "unfinished")
    finally:
        _cleanup(proc, seen - {-1})


@pytest.mark.marabou
def test_kill_9_during_the_own_engine_leaves_a_whole_json(tmp_path, float16_copy, acas_dir):
    proc, target, err = _start(tmp_path, float16_copy, acas_dir)
    try:
        started = _wait_for(lambda: proc.poll() is not None or bool(err.read_bytes().strip()),
                            APPEAR)
        assert started and proc.poll() is None, (proc.returncode, err.read_text()[-600:])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert check_target(target) in ("old", "unfinished")
    finally:
        _cleanup(proc, set())
