"""The README's promises: short, its quick start runs exactly as written in a fresh folder
beside ../shared, its links lead somewhere, and the command-line reference is current."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import DATA, REPO

from nnbisim.cli.reference import markdown

README = REPO / "README.md"


def _block(title: str) -> str:
    """The first code block after the heading ``## title``."""
    text = README.read_text()
    section = text.split(f"## {title}\n", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (REPO / link).exists(), link


def test_the_cli_reference_is_current():
    assert (REPO / "docs" / "cli.md").read_text() == markdown() + "\n", (
        "docs/cli.md is stale: python -m nnbisim.cli.reference > docs/cli.md")


def test_the_quick_start_runs_as_written(tmp_path):
    """Verbatim, in an empty folder with ../shared beside it and the venv as .venv."""
    (tmp_path / "shared").symlink_to(DATA.parent)
    clone = tmp_path / "clone"
    clone.mkdir()
    venv = Path(sys.prefix)
    if (venv / "bin" / "activate").is_file():
        (clone / ".venv").symlink_to(venv)
    else:  # not a venv: an activate that puts this interpreter's scripts first
        (clone / ".venv" / "bin").mkdir(parents=True)
        (clone / ".venv" / "bin" / "activate").write_text(
            f'PATH="{Path(sys.executable).parent}:$PATH"\n')
    script = "set -euo pipefail\n" + _block("Quick start")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    proc = subprocess.run(["bash", "-c", script], cwd=clone, capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "-> OK" in proc.stdout
    assert "HOLDS" in proc.stdout
    eps = json.loads((clone / "eps.json").read_text())["eps"]
    assert 0 < eps["witnessed"] <= eps["certified"]
    assert (clone / "result.txt").read_text().split()[0] == "unsat"
    assert "p0_unsat.vnnlib,unsat" in (clone / "bench-1_1" / "expected.csv").read_text()
