"""The command-line reference (``docs/cli.md``): every command's help, as ``--help`` prints it.

    python -m nnbisim.cli.reference > docs/cli.md

A test checks that docs/cli.md is what this writes, so the reference never drifts from the
parser.
"""

from __future__ import annotations

import argparse
import os

from nnbisim.cli.parser import build_parser

WIDTH = "100"  # columns argparse wraps the help at (it reads $COLUMNS)


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:  # noqa: SLF001 - argparse keeps its subcommands here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _sections(p: argparse.ArgumentParser, path: list[str]) -> list[str]:
    out = []
    for name, sub in _subparsers(p).items():
        out += [f"## nnbisim {' '.join([*path, name])}", "", "```", sub.format_help().rstrip(),
                "```", ""]
        out += _sections(sub, [*path, name])
    return out


def markdown() -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        lines = ["# Command-line reference", "",
                 "Every command's `--help` (written by `python -m nnbisim.cli.reference`; a "
                 "test keeps it current). Defaults are shown as `(default: ...)`; every option "
                 "has a line. What the commands compute is in the other files of docs/.", "",
                 "## nnbisim", "", "```", parser.format_help().rstrip(), "```", "",
                 *_sections(parser, [])]
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
