"""Reference features of a data set split, cached in the store's `cache` namespace.

Quality figures (FID, KID, pixel Fréchet distance) compare sample features
with reference features of real images. Inception features of 10,000 images
cost minutes on a GPU and hours on a CPU, so they are computed once per (data
set, split, size, limit, extractor digest) and kept as a float32 .npz (no
pickle); KID needs the features themselves, not only their moments, so the
features are what is cached. Pixel features are the images: never cached.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import torch

from scalespace.data import load_dataset
from scalespace.stats.features import FeatureExtractor, ProgressCallback, get_extractor
from scalespace.stats.frechet import FrechetReference
from scalespace.stats.moments import Moments
from scalespace.stats.quality import FID_MIN_SAMPLES, kid
from scalespace.storage.base import ArtifactStore

FEATURES = "features.npz"
#: full covariances of reference features up to this dimension (Inception's 2,048 included)
FULL_COVARIANCE_FEATURES = 2048
INFO = "info.json"


def reference_key(data: str, split: str, size: int | None, limit: int | None, extractor: FeatureExtractor) -> str:
    """The cache id: readable fields plus the extractor's digest (a new network never reuses old features)."""
    return f"ref-{data}-{split}-{size or 'native'}-{limit or 'all'}-{extractor.name}-{extractor.digest[:16]}"


def reference_features(
    data: str,
    split: str = "heldout",
    size: int | None = None,
    limit: int | None = None,
    extractor: str | FeatureExtractor = "pixels",
    store: ArtifactStore | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
) -> tuple[torch.Tensor, FeatureExtractor]:
    """Features (M, D) float32 of a split's images, from the cache when the store holds them.

    `progress(done, total)` reports the extraction's batches (not called on a cache hit).
    """
    ex = get_extractor(extractor, device=device)
    images = None
    if ex.name == "pixels" or store is None:
        images = load_dataset(data, split, size=size, limit=limit).images
        return ex(images, progress), ex
    key = reference_key(data, split, size, limit, ex)
    if store.exists("cache", key, FEATURES):
        with np.load(io.BytesIO(store.get("cache", key, FEATURES)), allow_pickle=False) as f:
            return torch.from_numpy(f["features"]), ex
    images = load_dataset(data, split, size=size, limit=limit).images
    feats = ex(images, progress)
    buf = io.BytesIO()
    np.savez_compressed(buf, features=feats.numpy().astype(np.float32))
    store.put("cache", key, FEATURES, buf.getvalue())
    store.put("cache", key, INFO, json.dumps({
        "data": data, "split": split, "size": size, "limit": limit, "count": int(feats.shape[0]),
        "extractor": ex.name, "digest": ex.digest,
    }, indent=2).encode())
    return feats, ex


def content_key(images: torch.Tensor, extractor: FeatureExtractor) -> str:
    """The cache id of an image set's features: the sha256 of its float32 values and shape, and the extractor's digest."""
    x = images.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(json.dumps(list(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return f"feat-{h.hexdigest()[:32]}-{extractor.name}-{extractor.digest[:16]}"


def content_features(
    images: torch.Tensor,
    extractor: str | FeatureExtractor = "inception",
    store: ArtifactStore | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    describe: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, FeatureExtractor, bool]:
    """Features (N, D) float32 of images (N, C, H, W) in [-1, 1], cached in the store by content hash.

    Returns (features, extractor, cached): cached is True when the store held
    them. Pixel features, or no store, are computed and not cached.
    `describe` goes into the cache entry's info.json (where the images came from).
    """
    ex = get_extractor(extractor, device=device)
    if ex.name == "pixels" or store is None:
        return ex(images, progress), ex, False
    key = content_key(images, ex)
    if store.exists("cache", key, FEATURES):
        with np.load(io.BytesIO(store.get("cache", key, FEATURES)), allow_pickle=False) as f:
            feats = torch.from_numpy(f["features"])
        if feats.ndim == 2 and feats.shape[0] == images.shape[0]:
            return feats, ex, True
    feats = ex(images, progress)
    buf = io.BytesIO()
    np.savez_compressed(buf, features=feats.numpy().astype(np.float32))
    store.put("cache", key, FEATURES, buf.getvalue())
    store.put("cache", key, INFO, json.dumps({
        **(describe or {}), "count": int(feats.shape[0]), "shape": list(images.shape[1:]),
        "extractor": ex.name, "digest": ex.digest,
    }, indent=2).encode())
    return feats, ex, False


class QualityReference:
    """Reference features with their Moments and square-root covariance, built once for many quality figures.

    Calling it on samples (B, C, H, W) gives {fid, n_samples, n_reference,
    extractor, kid_mean, kid_std[, warning]} as scalespace.stats.quality.fid does:
    the Fréchet distance in the extractor's feature space and, below 2,048
    samples, a warning and KID (mean and spread over subsets) beside it.
    """

    def __init__(self, features: torch.Tensor, extractor: FeatureExtractor):
        self.features = features
        self.extractor = extractor
        self.moments = Moments.from_samples(features, full=features.shape[1] <= FULL_COVARIANCE_FEATURES)
        self.distance = FrechetReference(self.moments)

    def __call__(self, samples: torch.Tensor, seed: int = 0) -> dict[str, Any]:
        f = self.extractor(samples)
        n = int(f.shape[0])
        out: dict[str, Any] = {"fid": None, "n_samples": n, "n_reference": self.moments.count,
                               "extractor": self.extractor.name, "kid_mean": None, "kid_std": None}
        if n < 2:
            out["warning"] = "a Fréchet distance needs at least 2 samples"
            return out
        out["fid"] = self.distance(Moments.from_samples(f, full=self.moments.full))
        if n < FID_MIN_SAMPLES:
            out["kid_mean"], out["kid_std"] = kid(f, self.features, min(1000, n, self.moments.count), 50, seed)
            out["warning"] = f"only {n} samples (< {FID_MIN_SAMPLES}): FID is biased upward; compare at equal n or use KID"
        return out


def quality(samples: torch.Tensor, ref_features: torch.Tensor, extractor: FeatureExtractor, seed: int = 0) -> dict[str, Any]:
    """One quality figure (see QualityReference); build a QualityReference to compute many."""
    return QualityReference(ref_features, extractor)(samples, seed)


__all__ = ["QualityReference", "content_features", "content_key", "quality", "reference_features", "reference_key"]
