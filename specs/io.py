"""Reading any VNN-LIB file: the version is sniffed from the text, ``.gz`` files are read too."""

from __future__ import annotations

import re

from nnbisim.core.errors import SpecError
from nnbisim.specs import vnnlib1, vnnlib2
from nnbisim.specs._text import PathLike, read_text, write_text
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.sets import InputSet, Property, SpecCase, TwoNetworkQuery

__all__ = ["detect_version", "read_input_set", "read_spec", "read_spec_cases", "read_text",
           "write_text"]

_COMMENT = re.compile(r";[^\n]*")


def detect_version(text: str, source: str = "<string>") -> str:
    """``"2.0"`` for text with ``vnnlib-version`` or ``declare-network``, ``"1.0"`` for
    ``declare-const``; SpecError otherwise."""
    code = _COMMENT.sub("", text)
    if "(vnnlib-version" in code or "(declare-network" in code:
        return "2.0"
    if "(declare-const" in code:
        return "1.0"
    raise SpecError(f"{source}: is not a VNN-LIB file: it has no (vnnlib-version <2.0>), "
                    "(declare-network ...) or (declare-const ...); check the file")


def read_spec(path: PathLike) -> Property | TwoNetworkQuery | CoupledQuery:
    """The property (1.0 or single-network 2.0) or two-network query (2.0) of a file."""
    text = read_text(path)
    if detect_version(text, str(path)) == "1.0":
        return vnnlib1.parse_property(text, str(path))
    return vnnlib2.parse_query(text, str(path))


def read_spec_cases(path: PathLike) -> list[SpecCase]:
    """The (box, unsafe set) cases of a single-network file, for boxes with own unsafe sets."""
    text = read_text(path)
    if detect_version(text, str(path)) == "1.0":
        return vnnlib1.parse_cases(text, str(path))
    return vnnlib2.parse_cases(text, str(path))


def read_input_set(path: PathLike) -> InputSet:
    """The input set of a file used as a region (its unsafe set, if any, is not used)."""
    spec = read_spec(path)
    if isinstance(spec, CoupledQuery):
        raise SpecError(f"{path}: gives two networks inputs of their own (a coupled query), "
                        "not one input set; give a region file with one box or union of boxes")
    return spec.inputs
