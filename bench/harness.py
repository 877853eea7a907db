"""What every bench shares: where the data and results are, what a run records, the resumable
loop over units of work, and the header of every results file.

Every row a bench writes records the commit it measured (the checkout must be clean: a result
must be reproducible from a commit, so a dirty checkout is refused), the machine (CPU model,
cores, torch threads) and the date. A bench appends rows to ``results/NAME.jsonl`` as they
finish, so a rerun resumes; rows of another commit are not mixed in: the rerun refuses until
``--fresh`` starts the file over (the old rows stay in git history). ``--summarise`` rewrites
the table from the rows there are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import torch
from matplotlib.figure import Figure

from nnbisim.adapters.executor import Executor
from nnbisim.core.pool import OK, Outcome, PoolOptions, Unit, run_local

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
RESULTS = HERE / "results"
WORK = HERE / "work"
TORCH_THREADS = 1


def commit() -> str:
    """The commit of the checkout; refuses changes to tracked files outside bench/results."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)bench/results"], check=True, capture_output=True,
                           text=True).stdout.strip()
    if dirty:
        sys.exit("bench: the checkout has uncommitted changes (git status); commit them first: "
                 "every result records the commit it measured")
    return head


def machine() -> str:
    """CPU model and cores."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def one_thread() -> None:
    """A worker's initializer: torch on one thread."""
    torch.set_num_threads(TORCH_THREADS)


class Results:
    """One bench's rows: ``NAME.jsonl`` beside ``NAME.md`` (and plots named after it)."""

    def __init__(self, path: Path, fresh: bool = False, check: bool = True) -> None:
        self.path, self.md = path, path.with_suffix(".md")
        self.stamp = {"commit": commit() if check else "-", "machine": machine(),
                      "date": time.strftime("%Y-%m-%d")}
        if fresh and path.exists():
            path.unlink()
        self.rows = ([json.loads(line) for line in path.read_text().splitlines() if line]
                     if path.exists() else [])
        other = {r.get("commit", r.get("code")) for r in self.rows} - {self.stamp["commit"]}
        if check and other:
            sys.exit(f"bench: {path} holds rows of {', '.join(sorted(map(str, other)))}, this "
                     f"checkout is {self.stamp['commit']}; rerun with --fresh to start over "
                     "(the old rows stay in git history), or --summarise to redraw the table")

    def add(self, row: dict) -> dict:
        """Append ``row`` with the stamp; a row measured in this process (not by :func:`run`'s
        workers, which record their own) gets this process's torch threads."""
        row = {"torch_threads": torch.get_num_threads(), **row, **self.stamp}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as sink:
            sink.write(json.dumps(row) + "\n")
        self.rows.append(row)
        return row

    def header(self, title: str, intro: str, planned: int | None = None) -> list[str]:
        """The first lines of the table: what was measured, at which commit, on what, when."""
        def counted(key: str, missing: str) -> str:
            counts = Counter(r.get(key, r.get("code", missing) if key == "commit" else missing)
                             for r in self.rows)
            return ", ".join(f"{k} ({n} rows)" for k, n in sorted(counts.items()))
        done = f"{len(self.rows)} of {planned} planned" if planned else str(len(self.rows))
        return [f"# {title}", "", intro, "",
                f"- rows: {done}",
                f"- commit: {counted('commit', 'not recorded')}",
                f"- machine: {counted('machine', 'not recorded (before bench/harness.py)')}",
                f"- torch threads per process: {counted('torch_threads', 'not recorded')}",
                f"- date: {counted('date', 'not recorded')}", ""]


def parser(doc: str, name: str, jobs: int = 2) -> argparse.ArgumentParser:
    """The options every bench takes: jobs, results file, --fresh, --summarise."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=jobs, help="units run at a time (processes)")
    ap.add_argument("--ray", metavar="ADDRESS", help="run the units on Ray (local, auto or an "
                    "address) instead of the local process pool")
    ap.add_argument("--results", type=Path, default=RESULTS / f"{name}.jsonl",
                    help="rows file (the table is beside it, .md)")
    ap.add_argument("--fresh", action="store_true", help="start the rows file over")
    ap.add_argument("--summarise", action="store_true",
                    help="only rewrite the table from the rows there are")
    return ap


def run(units: dict[object, tuple], fn: Callable[..., dict], results: Results,
        on_row: Callable[[dict], None], *, row_key: Callable[[dict], object],
        jobs: int = 1, fresh_process: bool = False, ray: str | None = None) -> None:
    """Run ``fn(*args)`` for every unit (``key: args``) whose key no row has yet
    (``row_key(row)``), ``jobs`` at a time on nnbisim's executor (the local pool, each unit in
    a new process with ``fresh_process``; Ray at ``ray``), adding each row as it finishes and
    calling ``on_row`` (e.g. to redraw the table). A unit that fails (raises, or kills its
    worker twice) is reported and left for the next run; it does not stop the others."""
    done = {row_key(r) for r in results.rows}
    todo = {str(k): (k, args) for k, args in units.items() if k not in done}
    print(f"{len(todo)} to run ({len(results.rows)} rows already)", flush=True)
    if not todo:
        return
    work = [Unit(name, _measured, (fn, *args)) for name, (_, args) in todo.items()]

    def landed(o: Outcome) -> None:
        if o.status != OK:
            print(f"{o.key}: {o.status} (left for the next run): {o.message}", flush=True)
            return
        on_row(results.add(o.value))
    if ray is None:
        run_local(work, landed, workers=jobs, initializer=one_thread,
                  options=PoolOptions(recycle=fresh_process))
    else:
        Executor(workers=jobs, ray=ray).run(work, landed, initializer=one_thread)


def _measured(fn: Callable[..., dict], *args: object) -> dict:
    """``fn(*args)`` in a worker, with the torch threads it ran on."""
    row = fn(*args)
    return {**row, "torch_threads": torch.get_num_threads()}


def scatter(groups: dict[str, list[float]], path: Path, ylabel: str, title: str,
            log: bool = True) -> None:
    """One column of points per group (a plot beside the table)."""
    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.subplots()
    names = list(groups)
    for k, name in enumerate(names):
        ax.scatter([k] * len(groups[name]), groups[name], s=10, alpha=0.6)
    ax.set_xticks(range(len(names)), [f"{n} ({len(groups[n])})" for n in names])
    if log and any(groups.values()):
        ax.set_yscale("log")
    elif not any(groups.values()):
        ax.text(0.5, 0.5, "nothing to show in these rows", ha="center", transform=ax.transAxes)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def baseline_tree(commit: str, work: Path) -> Path:
    """The package ``nnbisim`` of ``commit``, laid out for ``PYTHONPATH``."""
    tree, pkg = work / "tree", work / "pkg" / "nnbisim"
    tree.mkdir()
    pkg.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "plugin", "adapters",
                              "specs"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    for f in (tree / "plugin").iterdir():
        (pkg / f.name).symlink_to(f)
    for sub in ("adapters", "specs"):
        (pkg / sub).symlink_to(tree / sub)
    return pkg.parent


def cli_process(args: list[str], cwd: Path, pythonpath: str | None, timeout: float = 600
                ) -> tuple[float, int, str, str]:
    """``python -m nnbisim.cli ARGS`` in a fresh process (the package on ``pythonpath`` if
    given, e.g. :func:`baseline_tree`'s): wall seconds, exit code, stdout, stderr."""
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nnbisim.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc.returncode, proc.stdout, proc.stderr
