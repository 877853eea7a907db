"""Reading and writing specification text files (plain or gzip'd), with errors naming the file."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from nnbisim.core.errors import SpecError
from nnbisim.core.files import write_atomic

PathLike = str | Path
MAX_TEXT_BYTES = 512 * 2**20  # a VNN-LIB file's text, after decompression (docs/formats.md)


def read_text(path: PathLike) -> str:
    """The text of a VNN-LIB file; ``.gz`` files (or gzip content) are decompressed."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_TEXT_BYTES:
            raise SpecError(f"{p}: {_too_large(p.stat().st_size)}")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file; check the path") from None
    except IsADirectoryError:
        raise SpecError(f"{p}: is a directory; give a .vnnlib file") from None
    except OSError as e:
        raise SpecError(f"{p}: cannot be read ({e.strerror}); check its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: is not UTF-8 text (byte {e.start}); give a VNN-LIB text "
                        "file") from None
    if not text.strip():
        raise SpecError(f"{p}: is empty; give a VNN-LIB file with declarations and asserts")
    return text


def _too_large(n_bytes: int) -> str:
    return (f"holds {n_bytes / 2**20:.0f} MiB or more of text, over nnbisim's limit of "
            f"{MAX_TEXT_BYTES // 2**20} MiB for a VNN-LIB file (docs/formats.md); split the "
            "property into several files")


def _gunzip(raw: bytes, p: Path) -> bytes:
    """The content of gzip data, decompressed no further than :data:`MAX_TEXT_BYTES`."""
    out = bytearray()
    while raw[:2] == b"\x1f\x8b":  # one gzip member after another, as gzip.decompress reads
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflate.decompress(raw, MAX_TEXT_BYTES + 1 - len(out))
        except zlib.error as e:
            raise SpecError(f"{p}: is not a readable gzip file ({e}); decompress it and check "
                            "the content") from None
        if len(out) > MAX_TEXT_BYTES:
            raise SpecError(f"{p}: decompressed, {_too_large(len(out))}")
        if not inflate.eof:
            raise SpecError(f"{p}: is not a readable gzip file (it ends before its data "
                            "does); decompress it and check the content")
        raw = inflate.unused_data
    return bytes(out)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (gzip'd when the name ends in ``.gz``)."""
    p = Path(path)
    data = text.encode("utf-8")
    if p.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    try:
        write_atomic(p, data)
    except OSError as e:
        raise SpecError(f"{p}: cannot be written ({e.strerror}); check the folder exists and is "
                        "writable") from None
