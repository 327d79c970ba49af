"""Reference features cached in the store, keyed by data set, split, size and extractor digest."""

import torch

from scalespace.stats.features import get_extractor
from scalespace.stats.frechet import FrechetReference
from scalespace.stats.moments import Moments
from scalespace.stats.reference_cache import QualityReference, reference_features, reference_key
from scalespace.storage import LocalStore


def test_features_are_computed_once_and_keyed_by_digest(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    ex = get_extractor("random-conv")
    first, _ = reference_features("digits", "heldout", None, 50, ex, store)
    key = reference_key("digits", "heldout", None, 50, ex)
    assert ex.digest[:16] in key and store.exists("cache", key, "features.npz")
    calls = []
    monkeypatch.setattr(type(ex), "_forward", lambda self, x: calls.append(1) or torch.zeros(x.shape[0], 128))
    again, _ = reference_features("digits", "heldout", None, 50, ex, store)
    assert torch.equal(first, again) and not calls  # read back, not recomputed
    other = get_extractor("random-conv", seed=1)
    assert reference_key("digits", "heldout", None, 50, other) != key


def test_quality_reference_matches_one_off_figures_and_adds_kid():
    g = torch.Generator().manual_seed(0)
    ref_imgs = torch.rand(300, 1, 6, 6, generator=g) * 2 - 1
    samples = (torch.rand(40, 1, 6, 6, generator=g) * 1.6 - 0.9).clamp(-1, 1)
    ex = get_extractor("pixels")
    q = QualityReference(ex(ref_imgs), ex)(samples)
    direct = FrechetReference(Moments.from_samples(ex(ref_imgs).double(), full=True))(Moments.from_samples(samples.double(), full=True))
    assert abs(q["fid"] - direct) < 1e-9 * max(1.0, direct) and q["fid"] > 0.1
    assert q["n_samples"] == 40 and q["n_reference"] == 300 and q["kid_mean"] is not None and "2048" in q["warning"]
    # the small-n path (n x n eigenproblem) equals the D x D one; the latter carries sqrt(rounding) from its
    # 50 null-space eigenvalues, hence the 1e-7 (the n x n path has none)
    ref = FrechetReference(Moments.from_samples(torch.randn(500, 80, generator=g, dtype=torch.float64), full=True))
    x = torch.randn(30, 80, generator=g, dtype=torch.float64) * 1.2 + 0.1
    assert abs(ref.of_samples(x) - ref(Moments.from_samples(x, full=True))) < 1e-7 * ref.of_samples(x)
