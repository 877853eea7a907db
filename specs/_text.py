"""Reading and writing specification text files (plain or gzip'd), with errors naming the file."""

from __future__ import annotations

import gzip
from pathlib import Path

from nnbisim.core.errors import SpecError

PathLike = str | Path


def read_text(path: PathLike) -> str:
    """The text of a VNN-LIB file; ``.gz`` files (or gzip content) are decompressed."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file; check the path") from None
    except IsADirectoryError:
        raise SpecError(f"{p}: is a directory; give a .vnnlib file") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot be read ({e.strerror}); check its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise SpecError(f"{p}: is not a readable gzip file ({e}); decompress it and check "
                            "the content") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: is not UTF-8 text (byte {e.start}); give a VNN-LIB text "
                        "file") from None
    if not text.strip():
        raise SpecError(f"{p}: is empty; give a VNN-LIB file with declarations and asserts")
    return text


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (gzip'd when the name ends in ``.gz``)."""
    p = Path(path)
    data = text.encode("utf-8")
    if p.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    try:
        p.write_bytes(data)
    except OSError as e:
        raise SpecError(f"{p}: cannot be written ({e.strerror}); check the folder exists and is "
                        "writable") from None
