"""Shared test fixtures: where the real data lives, and small ONNX builders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nnbisim.core.allocator import keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))
# one torch thread, as the command line uses (docs/decisions.md, "Threads"): with one thread per
# core, spare threads spin-wait whenever another process holds a core, and a test's search ran
# ten times slower on a loaded machine (test_relu_bab: 30 s against 1.8 s for the same nodes)
os.environ.setdefault("OMP_NUM_THREADS", "1")
keep_freed_memory()  # as the command line does (nnbisim.core.allocator)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ACAS = DATA / "acasxu"


def acas_net(i: int, j: int) -> Path:
    return ACAS / f"ACASXU_run2a_{i}_{j}_batch_2000.onnx"


@pytest.fixture(scope="session")
def acas_dir() -> Path:
    if not ACAS.is_dir():
        pytest.fail(f"{ACAS} is missing: the tests need ../shared/data beside the repository")
    return ACAS


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: the tests need ../shared/data beside the repository")
    return DATA
