"""MNIST test set (idx, gzip) and the second paper's ten images, normalised to [-1, 1].

Only the 10,000 test images exist here (no training set): indices 0-4999 may be used for
training and calibration, 5000-9999 are held out and are the only ones accuracy is reported on.
Inputs are normalised as ``(pixel / 255 - 0.5) / 0.5``, as in the paper's code.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from nnbisim.core.errors import InputError

TRAIN = range(0, 5000)
HELD_OUT = range(5000, 10000)
PATCH = (13, 14)  # the 2x2 centre patch: rows and columns 13 and 14 of 28


def data_root() -> Path:
    """``../shared/data`` beside the repository, where the project keeps its data."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def normalise(pixels: np.ndarray) -> np.ndarray:
    return (np.asarray(pixels, dtype=np.float64) / 255.0 - 0.5) / 0.5


def _idx(path: Path, offset: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the folder holding the MNIST test set "
                         "(t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) with --data")
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def load_test_set(folder: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised images ``(10000, 784)`` and labels ``(10000,)``."""
    folder = Path(folder) if folder else data_root() / "mnist"
    images = _idx(folder / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    labels = _idx(folder / "t10k-labels-idx1-ubyte.gz", 8)
    return normalise(images), labels.astype(np.int64)


def paper_images(folder: Path | None = None) -> list[tuple[int, np.ndarray]]:
    """The paper's ten images ``(test index, normalised pixels)``, by index; the files are
    JPEG copies of those MNIST test images (named by index), read as grey levels."""
    folder = Path(folder) if folder else data_root() / "fnn-repair" / "images"
    files = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not files:
        raise InputError(f"{folder}: no .jpg images; give the paper's image folder")
    out = []
    for f in files:
        if not f.stem.isdigit():
            raise InputError(f"{f}: image files must be named by their test index, e.g. 12.jpg")
        pixels = np.asarray(Image.open(f).convert("L"), dtype=np.float64)
        if pixels.shape != (28, 28):
            raise InputError(f"{f}: {pixels.shape[0]}x{pixels.shape[1]} pixels, not 28x28")
        out.append((int(f.stem), normalise(pixels.reshape(-1))))
    return out


def patch_box(x: np.ndarray, delta: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The paper's region: the 2x2 centre patch of ``x`` moved by +-delta, clipped to [-1, 1]."""
    lo, hi = x.copy(), x.copy()
    for r in PATCH:
        for c in PATCH:
            lo[r * 28 + c] -= delta
            hi[r * 28 + c] += delta
    return np.clip(lo, -1.0, 1.0), np.clip(hi, -1.0, 1.0)
