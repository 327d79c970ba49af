"""Data sets that ship offline, scaled to [-1, 1], with a train / held-out split.

- `fashion-mnist`: 70,000 28x28 grey images from the Debian package
  `dataset-fashion-mnist` (train = its 60,000 training images, held-out = its
  10,000 test images).
- `digits`: scikit-learn's 1,797 8x8 grey digits (a fixed 80 / 20 split).
- `gaussian-mixture`: synthetic, any size; its parameters are known exactly
  (`gaussian_mixture_params`), so estimators can be checked against them.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from scalespace import ScalespaceError

FASHION_DIR_ENV = "SCALESPACE_FASHION_MNIST_DIR"
FASHION_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class DataSplit:
    """Images (n, C, H, W) float32 in [-1, 1] and their labels (n,) (or -1)."""

    images: torch.Tensor
    labels: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


#: the largest fashion-mnist split (its 60,000 training images); a file claiming more is not the data set
FASHION_MAX_ITEMS = 100_000
#: images per chunk when a split is read (a progress step each: a long load can be cancelled)
LOAD_CHUNK = 4096
#: output pixels per chunk when a split is resized (a progress step each)
RESIZE_CHUNK_PIXELS = 2**22
#: images in scikit-learn's digits (both splits); the mixture's splits hold 4096 and 1024
DIGITS_COUNT = 1797
FASHION_FIX = (f"reinstall it with 'apt-get install --reinstall dataset-fashion-mnist' "
               f"or set {FASHION_DIR_ENV} to a folder with good copies")


class _Corrupt(Exception):
    """What is wrong with an idx file (made into a one-line ScalespaceError naming the file)."""


def _read_exactly(f: Any, n: int, what: str) -> bytes:
    raw = f.read(n)
    if len(raw) < n:
        raise _Corrupt(f"truncated: it ends inside the {what} ({len(raw)} of {n} bytes)")
    return raw


def _read_idx(path: Path, ndim: int, item_shape: tuple[int, ...],
              on_chunk: Callable[[int, int], None] | None = None) -> np.ndarray:
    """An idx file of unsigned bytes (gzip), checked against its header: `ndim` dimensions, items of `item_shape`.

    The header's sizes are checked before anything is allocated, and no more than they announce is read,
    so a garbage or truncated file (or a gzip bomb) is a one-line ScalespaceError naming the file and the fix.
    The data is read LOAD_CHUNK items at a time; on_chunk(done, total) follows the chunks.
    """
    try:
        with gzip.open(path, "rb") as f:
            magic = int.from_bytes(_read_exactly(f, 4, "header"), "big")
            if magic >> 8 != 0x08 or magic & 0xFF != ndim:  # 0x0000 0x08 (unsigned byte) <ndim>
                raise _Corrupt(f"not an idx file of {ndim}-d unsigned bytes (magic number 0x{magic:08x})")
            dims = [int.from_bytes(_read_exactly(f, 4, "header"), "big") for _ in range(ndim)]
            if tuple(dims[1:]) != item_shape or not 1 <= dims[0] <= FASHION_MAX_ITEMS:
                raise _Corrupt(f"unexpected dimensions {dims}")
            size = math.prod(dims)
            item = math.prod(item_shape)
            chunks = -(-dims[0] // LOAD_CHUNK)
            if on_chunk is not None:
                on_chunk(0, chunks)
            parts, got = [], 0
            for c in range(chunks):
                want = min(LOAD_CHUNK, dims[0] - c * LOAD_CHUNK) * item
                parts.append(f.read(want))
                got += len(parts[-1])
                if len(parts[-1]) < want:
                    raise _Corrupt(f"truncated: it ends inside the data ({got} of {size} bytes)")
                if on_chunk is not None:
                    on_chunk(c + 1, chunks)
            raw = b"".join(parts)
            if f.read(1):
                raise _Corrupt(f"longer than its header says ({size} bytes of data)")
    except _Corrupt as e:
        raise ScalespaceError(f"data set 'fashion-mnist': {path} is corrupt ({e}); {FASHION_FIX}") from None
    except (OSError, EOFError, zlib.error) as e:  # not gzip, a truncated stream, a bad checksum, unreadable
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise ScalespaceError(f"data set 'fashion-mnist': cannot read {path} ({reason}); {FASHION_FIX}") from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


class _FashionCache:
    """The fashion-mnist splits once read (images, labels); `cache_clear` forgets them."""

    def __init__(self) -> None:
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, split: str, on_chunk: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self._splits.get(split)
        if hit is None:
            hit = self._splits[split] = _read_fashion(split, on_chunk)
        return hit

    def cached(self, split: str) -> bool:
        return split in self._splits

    def cache_clear(self) -> None:
        self._splits.clear()


def _read_fashion(split: str, on_chunk: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(os.environ.get(FASHION_DIR_ENV, FASHION_DEFAULT_DIR))
    prefix = "train" if split == "train" else "t10k"
    img, lab = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.exists() or not lab.exists():
        raise ScalespaceError(
            f"data set 'fashion-mnist' not found in {root}: install it with "
            f"'apt-get install dataset-fashion-mnist' or set {FASHION_DIR_ENV}"
        )
    # progress: the chunks read, then as many converted to floats
    images = _read_idx(img, 3, (28, 28), None if on_chunk is None else lambda done, total: on_chunk(done, 2 * total))
    labels = _read_idx(lab, 1, ())
    if len(images) != len(labels):
        raise ScalespaceError(f"data set 'fashion-mnist': {img} holds {len(images)} images but {lab} "
                              f"{len(labels)} labels; {FASHION_FIX}")
    if labels.size and int(labels.max()) > 9:
        raise ScalespaceError(f"data set 'fashion-mnist': {lab} is corrupt (a label above 9); {FASHION_FIX}")
    chunks = -(-len(images) // LOAD_CHUNK)
    x = torch.empty((len(images), 1, 28, 28), dtype=torch.float32)
    for c in range(chunks):
        lo, hi = c * LOAD_CHUNK, (c + 1) * LOAD_CHUNK
        x[lo:hi] = torch.from_numpy(images[lo:hi].astype(np.float32))[:, None] / 127.5 - 1.0
        if on_chunk is not None:
            on_chunk(chunks + c + 1, 2 * chunks)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


_fashion = _FashionCache()


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ScalespaceError("data set 'digits' needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32))[:, None] / 8.0 - 1.0
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    return x[perm], y[perm]


def gaussian_mixture_params(shape: tuple[int, int, int], components: int = 4, seed: int = 0, scale: float = 0.15):
    """Known parameters (weights (K,), means (K, C, H, W), std) of the synthetic mixture."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand((components,) + tuple(shape), generator=g, dtype=torch.float64) * 1.2 - 0.6)
    weights = torch.full((components,), 1.0 / components, dtype=torch.float64)
    return weights, means, scale


def _gaussian_mixture(shape: tuple[int, int, int], n: int, seed: int, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    weights, means, std = gaussian_mixture_params(shape, components)
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(weights, n, replacement=True, generator=g)
    x = means[k] + std * torch.randn((n,) + tuple(shape), generator=g, dtype=torch.float64)
    return x.clamp(-1, 1).to(torch.float32), k


DATASETS = ("fashion-mnist", "digits", "gaussian-mixture")


def load_dataset(
    name: str,
    split: str = "train",
    size: int | None = None,
    limit: int | None = None,
    mixture_shape: tuple[int, int, int] = (1, 8, 8),
    mixture_components: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> DataSplit:
    """Load a data set split ('train' or 'heldout'), optionally resized to `size` x `size` and cut to `limit` images.

    on_progress(done, total) follows the work: reading the files (fashion-mnist, LOAD_CHUNK images at a
    time, the first time a split is read), then resizing (RESIZE_CHUNK_PIXELS output pixels at a time);
    done reaches total.
    """
    if split not in ("train", "heldout"):
        raise ScalespaceError(f"split must be 'train' or 'heldout', got {split!r}")
    steps = _LoadSteps(on_progress)
    native = {"fashion-mnist": 28, "digits": 8}.get(name, mixture_shape[-1])

    per_chunk = max(1, RESIZE_CHUNK_PIXELS // (size * size)) if size else 1

    def resize_chunks(n: int) -> int:
        n = n if limit is None else min(n, limit)
        return -(-n // per_chunk) if size is not None and size != native else 0

    if name not in DATASETS:
        raise ScalespaceError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if name == "fashion-mnist":
        which = "train" if split == "train" else "test"
        if _fashion.cached(which):
            x, y = _fashion(which)
            steps.plan(1 + resize_chunks(len(x)))
        else:  # the chunks read and converted (their total once the header is read), then those resized
            x, y = _fashion(which, on_chunk=lambda done, total: (
                steps.plan(total + resize_chunks(total // 2 * LOAD_CHUNK)), steps.at(done)))
    else:  # one step to make the split, then its chunks to resize
        count = {"digits": math.floor(0.8 * DIGITS_COUNT), "gaussian-mixture": 4096}[name]
        steps.plan(1 + resize_chunks(count if split == "train" else {"digits": DIGITS_COUNT - count}.get(name, 1024)))
        steps.at(0)
        if name == "digits":
            x, y = _digits()
            cut = math.floor(0.8 * len(x))
            x, y = (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])
        else:
            n = 4096 if split == "train" else 1024
            x, y = _gaussian_mixture(tuple(mixture_shape), n, 0 if split == "train" else 1, mixture_components)
    steps.at(max(steps.done, 1))
    if limit is not None:
        if limit < 1:
            raise ScalespaceError("data limit must be >= 1")
        x, y = x[:limit], y[:limit]
    if size is not None and size != x.shape[-1]:
        if not 4 <= size <= 256:
            raise ScalespaceError(f"data size must be between 4 and 256 pixels, got {size}")
        # image by image the same arithmetic, in chunks: the result does not depend on the chunk size
        parts = []
        for lo in range(0, len(x), per_chunk):
            parts.append(F.interpolate(x[lo: lo + per_chunk], size=(size, size), mode="bilinear", antialias=True,
                                       align_corners=False).clamp(-1, 1))
            steps.at(steps.done + 1)
        x = torch.cat(parts) if len(parts) > 1 else parts[0]
    steps.finish()
    return DataSplit(images=x.contiguous(), labels=y)


class _LoadSteps:
    """The chunks of one load_dataset call, counted towards on_progress(done, total) (monotone; total once known)."""

    def __init__(self, fn: Callable[[int, int], None] | None):
        self.fn, self.done, self.total = fn, 0, 0
        self._sent: tuple[int, int] | None = None

    def plan(self, total: int) -> None:
        self.total = max(self.total, total)

    def at(self, done: int) -> None:
        self.done = max(self.done, done)
        now = (min(self.done, self.total), self.total)
        if self.fn is not None and now != self._sent:
            self._sent = now
            self.fn(*now)

    def finish(self) -> None:
        if self.done < self.total:
            self.done = self.total
            if self.fn is not None:
                self.fn(self.total, self.total)


def dataset_shape(name: str, size: int | None = None, mixture_shape: tuple[int, int, int] = (1, 8, 8)) -> tuple[int, int, int]:
    """(C, H, W) of a data set without loading it."""
    base = {"fashion-mnist": (1, 28, 28), "digits": (1, 8, 8), "gaussian-mixture": tuple(mixture_shape)}
    if name not in base:
        raise ScalespaceError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    c, h, w = base[name]
    return (c, size, size) if size else (c, h, w)
