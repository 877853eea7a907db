"""What every command's arguments share: the parser class, the input-set options, outputs,
``--force``, ``--quiet``, ``--json``, ``--device`` (light to import)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from nnbisim.cli import checks

EXIT_BAD_INPUT = 2
VERSIONS = ("1.0", "2.0")
VECTOR_OPTIONS = ("--lower", "--upper", "--center", "--radius", "--domain-lower",
                  "--domain-upper")


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows an option's default where it has one (not None, not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or (
                action.default is argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (and exit code 2), and shows defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command(sub, name: str, summary: str, handler: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=summary)
    p.set_defaults(handler=f"nnbisim.cli.{handler}", check=checks.common)
    return p


def region(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("input set (one of)")
    g.add_argument("--input", type=Path, metavar="P.vnnlib",
                   help="take the input set from a VNN-LIB file (1.0 or 2.0)")
    g.add_argument("--lower", metavar="L", help="comma-separated lower bounds")
    g.add_argument("--upper", metavar="U", help="comma-separated upper bounds")
    g.add_argument("--center", metavar="C", help="comma-separated centre of an L-inf ball")
    g.add_argument("--radius", metavar="R", help="radius of the ball (one value or one per input)")
    g.add_argument("--domain-lower", metavar="L", help="clip the ball to this lower bound")
    g.add_argument("--domain-upper", metavar="U", help="clip the ball to this upper bound")
    p.set_defaults(region_required=required)


def out_file(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--out", dest="out_file", type=Path, required=True, metavar="OUT",
                   help=what)


def networks(p: argparse.ArgumentParser, first: str = "the original network",
             second: str = "the compressed network", suffix: str = ".onnx") -> None:
    """The positional pair N1 N2."""
    p.add_argument("n1", type=Path, metavar=f"N1{suffix}", help=first)
    p.add_argument("n2", type=Path, metavar=f"N2{suffix}", help=second)


def finish(p: argparse.ArgumentParser, *, json: bool = True, quiet: bool = True) -> None:
    """The closing options of a command that writes: --json (where asked), --force, --quiet
    (where asked)."""
    if json:
        json_out(p)
    force(p)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite output files that exist")


def quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def json_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="OUT.json", help="also write the result as JSON")


def positive_count(text: str) -> int:
    """A whole number >= 1 (argparse turns the ValueError into a one-line refusal)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_count.__name__ = "positive integer"  # how argparse names the type in its refusal


def max_boxes(p: argparse.ArgumentParser, shared: str, flag: str = "--max-boxes",
              what: str = "input boxes, or ReLU splits for wide inputs") -> None:
    """The work limit beside a time budget: sub-problems (``what``) bounded, ``shared`` says
    among what."""
    p.add_argument(flag, type=positive_count, metavar="N",
                   help=f"work limit: stop after N bounded sub-problems ({what}), {shared}; "
                   "with it and a generous time budget the result is the same on any machine "
                   "(default: no limit)")


def workers(p: argparse.ArgumentParser,
            what: str = "units of work at a time, each in its own process (default: the "
            "machine's cores)") -> None:
    p.add_argument("--workers", type=positive_count, metavar="N", help=what)
    p.add_argument("--ray", metavar="ADDRESS", help="run the units on Ray instead: a head "
                   "node's address, auto (the cluster this machine belongs to) or local (a Ray "
                   "instance started here with --workers CPUs); needs pip install -e '.[ray]'")


def device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="where the bound engines run: auto (a CUDA "
                   "GPU when torch sees one, else cpu), cpu, cuda, cuda:1, ...")


def glue_vectors(argv: Sequence[str]) -> list[str]:
    """``--lower -0.1,-0.1`` -> ``--lower=-0.1,-0.1``, which argparse would read as an option."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok in VECTOR_OPTIONS:
            value = next(it, None)
            out.append(tok if value is None else f"{tok}={value}")
        else:
            out.append(tok)
    return out
