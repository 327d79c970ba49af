"""Scoring one image set against another: FID, KID, precision and recall, each with an interval.

The two sides are called A (the images scored, e.g. samples) and B (the
reference, e.g. a data set split). Both are (N, C, H, W) float tensors on the
[-1, 1] scale; features come from an extractor of scalespace.stats.features
("inception": 2048-d pool3 features; "pixels": the flattened images).

Figures and their intervals (all at level 1 - alpha, 95% by default):

- FID: the Fréchet distance between Gaussians fitted to A's and B's features.
  Interval: bootstrap, both sides resampled with replacement `fid_boot`
  times; the replicates are shifted by the bootstrap bias (mean replicate
  minus the estimate: resamples with duplicates have noisier covariances and
  read higher) and their alpha/2 and 1 - alpha/2 quantiles are reported. It
  is an interval of the FID expected at these sample sizes, what repeated
  measurements with fresh images of the same sizes scatter around; FID is
  biased upward at finite n, so the infinite-sample value lies lower.
- KID: the unbiased squared MMD with the kernel (x.y / D + 1)^3, averaged over
  `kid_subsets` random subsets of `kid_subset_size` images per side (as
  torch-fidelity). Reported with the standard deviation over subsets
  (torch-fidelity's "kid_std") and the interval spanned by the subsets'
  middle 1 - alpha share: where a KID measured on `kid_subset_size` images
  per side falls. KID is unbiased, so for two samples of one distribution the
  mean is about 0 and may be slightly negative.
- precision and recall (Kynkäänniemi et al. 2019): each side's manifold is the
  union of balls around its features with radius the distance to the k-th
  nearest neighbour within the same side. Precision is the share of A inside
  B's manifold (are the samples realistic?), recall the share of B inside A's
  manifold (is the reference covered?). Interval: the Wilson score interval of
  that share, given the other side's manifold (it covers the sampling of the
  side counted, not of the manifold).

Readers for the inputs (a folder of PNGs, a samples.npz, a data set slice)
live here too, so that every way in gives images on one scale.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalespace import ScalespaceError
from scalespace.data import DATASETS, load_dataset
from scalespace.stats._checks import batch_2d
from scalespace.stats.frechet import frechet_distance
from scalespace.stats.quality import kid_values

SPLITS = ("train", "heldout")
#: a data set argument: name:split, optionally [start:stop] (Python slice bounds, no step)
DATASET_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):(?P<split>[A-Za-z0-9_-]*)(?:\[(?P<start>-?\d*):(?P<stop>-?\d*)\])?$")
PNG_SUFFIXES = (".png",)
#: values of a samples.npz beyond this magnitude are not on the [-1, 1] scale
NPZ_RANGE = 1.5
SOURCE_HELP = ("a folder of PNGs, a samples.npz, a data set with its split such as "
               "'fashion-mnist:heldout' or 'digits:train[0:500]', or a finished sample job's id")


# --- readers -------------------------------------------------------------------------------
def images_from_array(arr: Any, what: str) -> torch.Tensor:
    """Check an array of images (N, C, H, W) with C in {1, 3} (or (N, H, W), taken as grey) and return float32."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] == 0 or min(a.shape[2:]) < 1:
        raise ScalespaceError(f"{what}: expected images of shape (N, C, H, W) with C = 1 or 3, got {a.shape}; "
                              "save samples as the sample job does (key 'samples', shape (n, C, H, W))")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ScalespaceError(f"{what}: images must be real numbers, got dtype {a.dtype}; save float32 values in [-1, 1]")
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ScalespaceError(f"{what}: holds NaN or infinite values; drop those images first")
    return x


def read_samples_npz(source: str | Path | bytes, what: str) -> torch.Tensor:
    """The `samples` array of a samples.npz (a path or its bytes), float32 (N, C, H, W) on the [-1, 1] scale."""
    name = "the artifact samples.npz" if isinstance(source, bytes) else f"'{source}'"
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ScalespaceError(f"{what}: {name} is a .npy array, not an .npz archive; "
                                      "save with numpy.savez(path, samples=array)")
            if "samples" not in f.files:
                raise ScalespaceError(f"{what}: {name} has no array 'samples' (it holds {sorted(f.files) or 'nothing'}); "
                                      "save with numpy.savez(path, samples=array), images (n, C, H, W) in [-1, 1]")
            arr = f["samples"]
    except ScalespaceError:
        raise
    except ValueError as e:  # object arrays (pickle refused), a bad header
        raise ScalespaceError(f"{what}: cannot read {name} ({e}); save plain numeric arrays with numpy.savez") from None
    except (OSError, EOFError) as e:
        raise ScalespaceError(f"{what}: cannot read {name} as .npz ({type(e).__name__}: {e}); "
                              "pass a file written by numpy.savez") from None
    x = images_from_array(arr, what)
    if float(x.abs().max()) > NPZ_RANGE:
        raise ScalespaceError(f"{what}: {name} holds values up to {float(x.abs().max()):.4g}, not images on the "
                              "[-1, 1] scale; convert uint8 images with x / 127.5 - 1")
    return x


def _png_array(path: Path, what: str) -> np.ndarray:
    """One PNG as float64 (C, H, W) in 8-bit units: C = 1 for grey, 3 for colour."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode.startswith("I"):  # 16-bit grey
                return (np.asarray(img, dtype=np.float64) / 65535.0 * 255.0)[None]
            if mode == "F":
                raise ScalespaceError(f"{what}: {path.name} holds 32-bit float pixels; save 8-bit grey or RGB PNGs")
            if mode in ("1", "L", "LA"):
                return np.asarray(img.convert("L"), dtype=np.float64)[None]
            rgb = np.asarray(img.convert("RGB"), dtype=np.float64).transpose(2, 0, 1)
            if mode == "P" and np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2]):
                return rgb[:1]  # a grey palette
            return rgb
    except UnidentifiedImageError:
        raise ScalespaceError(f"{what}: {path} is not a readable PNG; remove it or re-save it as PNG") from None
    except OSError as e:
        raise ScalespaceError(f"{what}: cannot read {path} ({e}); re-save it as PNG") from None


def read_png_folder(folder: str | Path, what: str, limit: int | None = None) -> torch.Tensor:
    """The PNGs of a folder (not its subfolders), in file-name order, as float32 (N, C, H, W) in [-1, 1].

    An 8-bit value p maps to p / 127.5 - 1 (as the data sets do); 16-bit grey
    is scaled to 8 bits first. Grey images (modes 1, L, LA, I;16, grey
    palettes) give C = 1, colour ones C = 3 (alpha is dropped); when a folder
    mixes grey and colour images, the grey ones become grey RGB.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ScalespaceError(f"{what}: folder '{folder}' does not exist; pass an existing folder of PNG images")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in PNG_SUFFIXES)
    if not files:
        raise ScalespaceError(f"{what}: folder '{folder}' holds no .png files; put the images there as PNGs")
    if limit is not None:
        files = files[:limit]
    arrays = [_png_array(p, what) for p in files]
    first = arrays[0].shape[1:]
    for p, a in zip(files, arrays):
        if a.shape[1:] != first:
            raise ScalespaceError(f"{what}: images of different sizes in '{folder}' ({files[0].name} is "
                                  f"{first[1]}x{first[0]}, {p.name} {a.shape[2]}x{a.shape[1]}); resize them to one size")
    if len({a.shape[0] for a in arrays}) > 1:
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    x = np.stack(arrays) / 127.5 - 1.0
    return torch.from_numpy(x.astype(np.float32))


def parse_dataset(text: str) -> tuple[str, str, int | None, int | None] | None:
    """(name, split, start, stop) of 'name:split' or 'name:split[start:stop]'; None when text has no ':'."""
    m = DATASET_PATTERN.match(text)
    if m is None:
        return None
    start = int(m["start"]) if m["start"] not in (None, "") else None
    stop = int(m["stop"]) if m["stop"] not in (None, "") else None
    return m["name"], m["split"], start, stop


def dataset_images(text: str, what: str, size: int | None = None) -> torch.Tensor:
    """Images of a data set argument 'name:split[start:stop]' (optionally resized to size x size)."""
    parsed = parse_dataset(text)
    if parsed is None:
        raise ScalespaceError(f"{what}: {text!r} is not a data set argument; write name:split or "
                              "name:split[start:stop], e.g. fashion-mnist:train[0:5000]")
    name, split, start, stop = parsed
    if name not in DATASETS:
        raise ScalespaceError(f"{what}: unknown data set {name!r}; choose one of {', '.join(DATASETS)} "
                              "(e.g. fashion-mnist:heldout)")
    if split not in SPLITS:
        raise ScalespaceError(f"{what}: unknown split {split!r} of {name}; choose one of {', '.join(SPLITS)} "
                              f"(e.g. {name}:{SPLITS[0]})")
    x = load_dataset(name, split, size=size).images
    n = x.shape[0]
    lo, hi, _ = slice(start, stop).indices(n)
    if hi <= lo:
        raise ScalespaceError(f"{what}: the slice [{'' if start is None else start}:{'' if stop is None else stop}] of "
                              f"{name}:{split} is empty (it has {n} images); pass bounds within 0..{n}")
    if stop is not None and stop > n:
        raise ScalespaceError(f"{what}: {name}:{split} has {n} images, fewer than the slice's end {stop}; "
                              f"pass an end of at most {n}")
    return x[lo:hi].contiguous()


# --- statistics ----------------------------------------------------------------------------
def _moments_weighted(f: torch.Tensor, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (float64) of the rows of f, row i counted counts[i] times."""
    n = f.shape[0] if counts is None else int(counts.sum())
    w = torch.ones(f.shape[0], dtype=f.dtype) if counts is None else counts.to(f.dtype)
    mu = (w @ f) / n
    c = f - mu
    cov = (c.T * w) @ c / (n - 1)
    return mu, (cov + cov.T) / 2


def _fid_replicate(mu1: torch.Tensor, c1: torch.Tensor, mu2: torch.Tensor, c2: torch.Tensor) -> float:
    """The Fréchet distance with one eigensolve: tr sqrt(S1 S2) from the eigenvalues of L^T S2 L, S1 = L L^T.

    L^T S2 L has the eigenvalues of S1 S2 and is symmetric; a Cholesky factor
    costs far less than the symmetric square root. A singular S1 (fewer
    images than dimensions) falls back to frechet_distance.
    """
    chol, info = torch.linalg.cholesky_ex(c1)
    if int(info) != 0:
        return frechet_distance(mu1, c1, mu2, c2)
    m = chol.T @ c2 @ chol
    w = torch.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    fd = float(diff @ diff) + float(torch.trace(c1) + torch.trace(c2)) - 2.0 * float(w.clamp(min=0).sqrt().sum())
    return max(fd, 0.0)


def fid_with_interval(
    fa: Any, fb: Any, *, n_boot: int = 50, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """FID between feature sets fa (N, D) and fb (M, D), with the debiased bootstrap interval (module docstring).

    Returns {fid, low, high, bootstrap_bias, n_boot, interval}; low/high/bias
    are None when n_boot is 0.
    """
    a, b = batch_2d(fa, "A features"), batch_2d(fb, "B features")
    if a.shape[1] != b.shape[1]:
        raise ScalespaceError(f"B: features of dimension {b.shape[1]} differ from A's {a.shape[1]}; use one extractor")
    if n_boot != 0 and n_boot < 2:
        raise ScalespaceError(f"fid_boot: must be 0 (no interval) or at least 2, got {n_boot}; pass e.g. 50")
    mu_a, cov_a = _moments_weighted(a)
    mu_b, cov_b = _moments_weighted(b)
    est = frechet_distance(mu_a, cov_a, mu_b, cov_b)
    out: dict[str, Any] = {"fid": est, "low": None, "high": None, "bootstrap_bias": None, "n_boot": n_boot,
                           "interval": f"{1 - alpha:.0%} debiased bootstrap percentile interval ({n_boot} resamples "
                                       "of both sides): the FID expected at these sample sizes"}
    if n_boot == 0:
        out["interval"] = "none (fid_boot = 0)"
        return out
    g = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(n_boot):
        ca = torch.bincount(torch.randint(a.shape[0], (a.shape[0],), generator=g), minlength=a.shape[0])
        cb = torch.bincount(torch.randint(b.shape[0], (b.shape[0],), generator=g), minlength=b.shape[0])
        ma, sa = _moments_weighted(a, ca)
        mb, sb = _moments_weighted(b, cb)
        reps.append(_fid_replicate(ma, sa, mb, sb))
    r = torch.tensor(reps, dtype=torch.float64)
    bias = float(r.mean()) - est
    lo, hi = (float(v) for v in torch.quantile(r - bias, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)))
    out.update(low=max(lo, 0.0), high=max(hi, 0.0), bootstrap_bias=bias)
    return out


def kid_with_interval(
    fa: Any, fb: Any, *, subset_size: int = 1000, n_subsets: int = 100, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """KID (mean over subsets), its std over subsets and the subsets' middle 1 - alpha range (module docstring)."""
    vals = kid_values(fa, fb, subset_size, n_subsets, seed)
    m = min(subset_size, batch_2d(fa, "A features").shape[0], batch_2d(fb, "B features").shape[0])
    lo, hi = (float(v) for v in torch.quantile(vals, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)))
    return {"kid": float(vals.mean()), "std": float(vals.std(correction=0)), "low": lo, "high": hi,
            "subset_size": m, "n_subsets": n_subsets,
            "interval": f"middle {1 - alpha:.0%} of {n_subsets} subset estimates with {m} images per side"}


def _kth_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of x to its k-th nearest other row (squared, float64)."""
    sq = (x * x).sum(dim=1)
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        d2 = (sq[i : i + chunk, None] + sq[None, :] - 2 * x[i : i + chunk] @ x.T).clamp(min=0)
        # The row itself sits at distance 0 (up to rounding): the (k+1)-th smallest is the k-th neighbour.
        idx = torch.arange(i, min(i + chunk, x.shape[0]))
        d2[idx - i, idx] = -1.0
        out[i : i + chunk] = d2.kthvalue(k + 1, dim=1).values.double()
    return out


def _inside(points: torch.Tensor, centres: torch.Tensor, radii2: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each point: whether it lies in some ball (centre, radius) of the other side's manifold."""
    psq, csq = (points * points).sum(dim=1), (centres * centres).sum(dim=1)
    out = torch.empty(points.shape[0], dtype=torch.bool)
    for i in range(0, points.shape[0], chunk):
        d2 = (psq[i : i + chunk, None] + csq[None, :] - 2 * points[i : i + chunk] @ centres.T).clamp(min=0)
        out[i : i + chunk] = (d2.double() <= radii2[None, :]).any(dim=1)
    return out


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a binomial share successes / n."""
    if n < 1:
        raise ScalespaceError("n: the Wilson interval needs at least one trial")
    z = float(torch.special.ndtri(torch.tensor(1 - alpha / 2, dtype=torch.float64)))
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def precision_recall(fa: Any, fb: Any, *, k: int = 3, alpha: float = 0.05, chunk: int = 1024) -> dict[str, Any]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of A against the reference B, k-NN manifolds."""
    a, b = batch_2d(fa, "A features"), batch_2d(fb, "B features")
    if not isinstance(k, int) or k < 1:
        raise ScalespaceError(f"k: must be a whole number >= 1, got {k!r}; pass e.g. 3")
    for side, x in (("A", a), ("B", b)):
        if x.shape[0] < k + 1:
            raise ScalespaceError(f"{side}: {x.shape[0]} images are too few for the k-NN manifold with k = {k}; "
                                  f"pass at least {k + 1} images or a smaller --k")
    if a.shape[1] != b.shape[1]:
        raise ScalespaceError(f"B: features of dimension {b.shape[1]} differ from A's {a.shape[1]}; use one extractor")
    # Centred on B's mean in float64, then float32: the Gram trick keeps its precision on centred values.
    centre = b.mean(dim=0)
    a32, b32 = (a - centre).float(), (b - centre).float()
    ra, rb = _kth_radius(a32, k, chunk), _kth_radius(b32, k, chunk)
    prec = _inside(a32, b32, rb, chunk)
    rec = _inside(b32, a32, ra, chunk)
    out = {"k": k}
    for name, hits in (("precision", prec), ("recall", rec)):
        s, n = int(hits.sum()), int(hits.numel())
        lo, hi = wilson_interval(s, n, alpha)
        out[name] = {"value": s / n, "low": lo, "high": hi, "count": s, "of": n}
    out["interval"] = f"{1 - alpha:.0%} Wilson interval of the share, given the other side's manifold"
    return out


def score_features(
    fa: Any,
    fb: Any,
    *,
    k: int = 3,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    fid_boot: int = 50,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Every figure of A's features against B's: {n_a, n_b, dim, fid, kid, precision_recall[, warnings]}."""
    if not 0 < alpha < 1:
        raise ScalespaceError(f"alpha: must be in (0, 1), got {alpha}; pass e.g. 0.05")
    a, b = batch_2d(fa, "A features"), batch_2d(fb, "B features")
    for side, x in (("A", a), ("B", b)):
        if x.shape[0] < 2:
            raise ScalespaceError(f"{side}: {x.shape[0]} image is too few for the statistics; pass at least "
                                  f"{max(2, k + 1)} images (a few thousand for a FID worth comparing)")
    if a.shape[1] != b.shape[1]:
        raise ScalespaceError(f"B: features of dimension {b.shape[1]} differ from A's {a.shape[1]}; "
                              "with --features pixels both sides need images of one shape")
    out: dict[str, Any] = {"n_a": int(a.shape[0]), "n_b": int(b.shape[0]), "dim": int(a.shape[1]), "alpha": alpha}
    out["fid"] = fid_with_interval(a, b, n_boot=fid_boot, alpha=alpha, seed=seed)
    out["kid"] = kid_with_interval(a, b, subset_size=kid_subset_size, n_subsets=kid_subsets, alpha=alpha, seed=seed)
    out["precision_recall"] = precision_recall(a, b, k=k, alpha=alpha)
    warnings = []
    if min(a.shape[0], b.shape[0]) < 2048:
        warnings.append(f"fewer than 2048 images on a side ({a.shape[0]} and {b.shape[0]}): FID is biased upward; "
                        "compare FIDs only at equal sizes, or use KID")
    if out["kid"]["subset_size"] == a.shape[0] == b.shape[0]:
        warnings.append("the KID subsets are the whole sets, so they do not vary; pass a smaller KID subset size "
                        "for a spread")
    if min(a.shape[0], b.shape[0]) <= a.shape[1]:
        warnings.append(f"a side has no more images than feature dimensions ({a.shape[1]}): its covariance is singular")
    if warnings:
        out["warnings"] = warnings
    return out


__all__ = [
    "SOURCE_HELP", "SPLITS", "dataset_images", "fid_with_interval", "images_from_array", "kid_with_interval",
    "parse_dataset", "precision_recall", "read_png_folder", "read_samples_npz", "score_features", "wilson_interval",
]
