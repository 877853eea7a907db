"""The executor: the local process pool and Ray keep one contract (a unit's value, error,
timeout, a retried worker death, a unit that always kills its worker), streamed as they end."""

from __future__ import annotations

import threading

import pytest
import units

from nnbisim.adapters.executor import Executor
from nnbisim.core import interrupt
from nnbisim.core.errors import InputError
from nnbisim.core.pool import PoolOptions, Unit, run_local

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(units)  # Ray's workers do not see tests/ on sys.path


def _units(tmp_path) -> list[Unit]:
    return [Unit("square", units.square, (3,)), Unit("fails", units.fails, ("x",)),
            Unit("sleeps", units.sleeps, (60,), timeout=0.5),
            Unit("dies once", units.dies_once, (str(tmp_path / "marker"),)),
            Unit("dies", units.dies), Unit("square 2", units.square, (4,))]


@pytest.mark.parametrize("backend", [None, "local"], ids=["pool", "ray"])
def test_every_unit_ends_once_with_its_outcome(tmp_path, backend):
    streamed = []
    out = Executor(workers=2, ray=backend, grace=0.5).run(_units(tmp_path), streamed.append)
    assert [o.key for o in out] == [o.key for o in streamed]  # handed over as they ended
    got = {o.key: o for o in out}
    assert sorted(got) == sorted(u.key for u in _units(tmp_path))
    assert (got["square"].status, got["square"].value) == ("ok", 9)
    assert got["square 2"].value == 16
    assert got["fails"].status == "error" and "ValueError: bad x" in got["fails"].message
    assert got["sleeps"].status == "timeout"
    # killed from outside under its first attempt: run again, nothing lost
    assert got["dies once"].status == "ok" and got["dies once"].value.startswith("second try")
    assert (tmp_path / "marker").exists()
    assert got["dies"].status == "error" and "died" in got["dies"].message


def test_the_pool_reports_progress_and_replaces_dead_workers(tmp_path):
    seen = []
    out = run_local([Unit(str(k), units.pid_after, (0.05,)) for k in range(6)]
                    + [Unit("dies", units.dies)], lambda o: None, workers=2,
                    options=PoolOptions(retries=2), on_progress=seen.append)
    assert [p.done for p in seen] == list(range(1, 8)) and seen[-1].total == 7
    dead = [o for o in out if o.key == "dies"][0]
    assert dead.attempts == 3 and dead.status == "error"
    assert all(o.status == "ok" for o in out if o.key != "dies")


def test_a_stop_request_returns_what_finished(tmp_path):
    out = []
    timer = threading.Timer(1.5, interrupt.request)
    timer.start()
    try:
        run_local([Unit("quick", units.square, (2,))]
                  + [Unit(f"slow {k}", units.sleeps, (30,)) for k in range(3)],
                  out.append, workers=2)
    finally:
        timer.cancel()
        interrupt._flag.clear()
    assert [o.key for o in out] == ["quick"]  # the slow ones were not reported: a rerun runs them


def test_zero_workers_is_refused():
    with pytest.raises(InputError, match="--workers"):
        Executor(workers=0)
