"""What the command handlers share: progress lines on stderr, JSON files written whole."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def progress_to_stderr(start: float | None = None, quiet: bool = False
                       ) -> Callable[[str], None] | None:
    """A progress callback printing ``[seconds] message`` lines to stderr (None when quiet)."""
    if quiet:
        return None
    t0 = time.perf_counter() if start is None else start

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)
    return say


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename, so that an
    interrupted run never leaves a half-written file; the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
