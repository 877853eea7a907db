"""Malformed inputs through the real command line (issue 26): truncated, random, mistyped and
non-finite ONNX files, broken VNN-LIB (unbalanced, cut, NaN bounds, undeclared variables,
lower above upper, deep nesting), bad .pth state dicts, gzip'd files (cut, corrupt, bombs),
bad option values and unwritable output paths. The contract (README, "Bad input is one
line"): exit code 2, exactly one line on stderr, no traceback.

The makers are in ``tests/fuzz_oracle.py`` (``bench/fuzz.py`` counts them by kind). Every
command runs in its own process group with its address space limited, so a memory limit the
tool misses fails fast instead of taking the machine.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from fuzz_oracle import MAKERS, Workshop, run_cli
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

# makers whose commands answer before torch loads: cheap enough to draw many times
LIGHT = sorted(n for n in MAKERS if n.startswith(("vnnlib", "onnx_", "option_")) and n not in
               ("onnx_sigmoid", "onnx_int_input", "onnx_zero_std", "onnx_wide_layer"))


@pytest.fixture(scope="module")
def workshop(tmp_path_factory) -> Workshop:
    return Workshop(tmp_path_factory.mktemp("fuzz-inputs"))


def refused_in_one_line(workshop: Workshop, name: str, rng_seed: int) -> None:
    case = MAKERS[name](workshop, np.random.default_rng(rng_seed))
    out = run_cli(case.argv, workshop.folder)
    command = "nnbisim " + " ".join(case.argv)
    assert out.verdict == "clean refusal", (
        f"{name} ({case.what}): {out.verdict}, exit {out.code}, {out.lines} lines on stderr, "
        f"first: {out.first_line!r}, last: {out.last_line!r}\n  {command}")
    assert out.first_line.startswith("nnbisim"), out.first_line


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_every_kind_of_bad_input_is_one_line_and_exit_2(workshop, name):
    refused_in_one_line(workshop, name, zlib.crc32(name.encode()))


@seed(26)
@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(LIGHT), rng_seed=st.integers(0, 2**32 - 1))
def test_random_bad_files_are_one_line_and_exit_2(workshop, name, rng_seed):
    refused_in_one_line(workshop, name, rng_seed)


def test_the_good_files_are_accepted(workshop):
    """The makers break good files: the good ones themselves pass (so a refusal above is the
    breakage's, not the base's)."""
    w = workshop
    for argv in (("merge", w.n1, w.n2, "-o", w.out("m.onnx")),
                 ("check", w.merged, w.n1, w.n2, "--input", w.vnnlib, "--samples", "100"),
                 *(("spec", "--input", p, "--eps", "0.1", "--n-outputs", "2", "-o",
                    w.out("q.vnnlib")) for p in (w.vnnlib, w.vnnlib2)),
                 ("convert", w.pth, "--arch", "3-4-2", "-o", w.out("m.onnx"))):
        out = run_cli(argv, w.folder)
        assert out.code == 0 and out.verdict != "traceback", (argv, out)
