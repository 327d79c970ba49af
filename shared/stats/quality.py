"""Sample-quality statistics: FID, KID, bootstrap intervals, memorisation.

FID is the Fréchet distance between Gaussians moment-matched to extractor
features of samples and reference images. It is biased upward at small n,
so below 2,048 samples the result carries a warning and KID (unbiased
polynomial-kernel MMD^2, as in torch-fidelity) alongside.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from scalespace import ScalespaceError
from scalespace.stats._checks import batch_2d
from scalespace.stats.features import FeatureExtractor, get_extractor
from scalespace.stats.frechet import frechet_from_moments
from scalespace.stats.moments import Moments

FID_MIN_SAMPLES = 2048
#: the interval kinds bootstrap_interval offers
BOOTSTRAP_METHODS = ("bca", "percentile", "basic")


def reference_statistics(
    images: torch.Tensor | Iterable[torch.Tensor],
    extractor: str | FeatureExtractor = "inception",
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    full: bool = True,
) -> Moments:
    """Feature Moments of images (B, C, H, W) in [-1, 1], or of an iterable of such batches.

    The result's meta records the extractor name and digest, so it can be
    cached (Moments.to_dict is JSON) and checked against the extractor later.
    device/batch_size apply when `extractor` is a name (an instance keeps its own).
    """
    ex = get_extractor(extractor, device=device, batch_size=batch_size)
    batches = [images] if isinstance(images, torch.Tensor) else images
    m: Moments | None = None
    for b in batches:
        f = ex(b)
        if m is None:
            m = Moments(dim=f.shape[1], full=full, meta={"extractor": ex.name, "digest": ex.digest})
        m.update(f)
    if m is None:
        raise ScalespaceError("images: no batches given; pass at least one (B, C, H, W) batch")
    return m


def kid_values(
    features1: Any, features2: Any, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0
) -> torch.Tensor:
    """Unbiased MMD^2 of each of `n_subsets` random subsets (float64 (n_subsets,)); see kid."""
    x, y = batch_2d(features1, "features1"), batch_2d(features2, "features2")
    if x.shape[1] != y.shape[1]:
        raise ScalespaceError(f"features2: dim {y.shape[1]} differs from features1's {x.shape[1]}; use one extractor")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ScalespaceError(f"kid: subsets of {m} rows are too small; pass at least 2 samples and subset_size >= 2")
    if n_subsets < 1:
        raise ScalespaceError(f"n_subsets: must be >= 1, got {n_subsets}; pass e.g. 100")
    d = x.shape[1]
    g = torch.Generator().manual_seed(seed)
    vals = torch.empty(n_subsets, dtype=torch.float64)
    for k in range(n_subsets):
        a = x[torch.randperm(x.shape[0], generator=g)[:m]]
        b = y[torch.randperm(y.shape[0], generator=g)[:m]]
        kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        # Unbiased: within-set sums leave out the diagonal (a sample paired with itself).
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        vals[k] = within - 2 * kxy.sum() / (m * m)
    return vals


def kid(
    features1: Any, features2: Any, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of unbiased MMD^2 over random subsets.

    features1 (N1, D), features2 (N2, D); kernel k(x, y) = (x.y / D + 1)^3;
    each subset draws min(subset_size, N1, N2) rows of each without
    replacement. Std is the population std over subsets (as torch-fidelity).
    """
    vals = kid_values(features1, features2, subset_size, n_subsets, seed)
    return float(vals.mean()), float(vals.std(correction=0))


def fid_from_features(
    features: Any,
    reference: Any | Moments,
    *,
    extractor: str = "features",
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """FID (and KID below 2,048 samples) from sample features (N, D) and reference features (M, D) or Moments.

    Returns {fid, n_samples, n_reference, extractor, kid_mean, kid_std[, warning]};
    KID entries are None when not computed (enough samples, or reference
    given only as cached Moments).
    """
    f = batch_2d(features, "features")
    if f.shape[0] < 2:
        raise ScalespaceError("samples: need at least 2 samples for a covariance; pass more samples")
    ref_f = None
    if isinstance(reference, Moments):
        ref = reference
    else:
        ref_f = batch_2d(reference, "reference")
        ref = Moments.from_samples(ref_f, full=True)
    if ref.dim != f.shape[1]:
        raise ScalespaceError(f"reference: dim {ref.dim} differs from the sample features' {f.shape[1]}; use one extractor")
    if ref.count < 2:
        raise ScalespaceError("reference: need at least 2 reference images for a covariance; pass more")
    out: dict[str, Any] = {
        "fid": frechet_from_moments(Moments.from_samples(f, full=True), ref),
        "n_samples": int(f.shape[0]),
        "n_reference": int(ref.count),
        "extractor": extractor,
        "kid_mean": None,
        "kid_std": None,
    }
    if f.shape[0] < FID_MIN_SAMPLES:
        warning = f"only {f.shape[0]} samples (< {FID_MIN_SAMPLES}): FID is biased upward; compare at equal n or use KID"
        if ref_f is None:
            warning += "; KID skipped as the reference is cached statistics, not features"
        else:
            out["kid_mean"], out["kid_std"] = kid(f, ref_f, kid_subset_size, kid_subsets, seed)
        out["warning"] = warning
    return out


def fid(
    samples: torch.Tensor,
    reference: torch.Tensor | Moments,
    extractor: str | FeatureExtractor = "inception",
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """FID of sample images (N, C, H, W) in [-1, 1] against reference images or cached reference Moments.

    See fid_from_features for the returned dict. Cached Moments must come from
    reference_statistics with the same extractor (checked by digest).
    """
    ex = get_extractor(extractor, device=device, batch_size=batch_size)
    if isinstance(reference, Moments):
        digest = reference.meta.get("digest")
        if digest is not None and digest != ex.digest:
            raise ScalespaceError(
                f"reference: statistics were made by extractor {reference.meta.get('extractor')!r} with another digest; recompute them"
            )
        ref: torch.Tensor | Moments = reference
    else:
        ref = ex(reference)
    return fid_from_features(
        ex(samples), ref, extractor=ex.name, kid_subset_size=kid_subset_size, kid_subsets=kid_subsets, seed=seed
    )


def fid_statistic(reference: Moments) -> Callable[[torch.Tensor], float]:
    """A statistic for bootstrap_ci: features (N, D) -> FID against fixed reference Moments."""
    return lambda f: frechet_from_moments(Moments.from_samples(f, full=True), reference)


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _normal_ppf(p: float) -> float:
    return float(torch.special.ndtri(torch.tensor(p, dtype=torch.float64)))


def _jackknife(x: torch.Tensor, stat: Callable[[torch.Tensor], float], groups: int) -> torch.Tensor:
    """Delete-a-group jackknife values of stat: x's rows split into `groups` contiguous groups, one left out each time."""
    n = x.shape[0]
    g = max(2, min(int(groups), n))
    edges = [round(k * n / g) for k in range(g + 1)]
    keep = torch.ones(n, dtype=torch.bool)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        keep[a:b] = False
        out.append(float(stat(x[keep])))
        keep[a:b] = True
    return torch.tensor(out, dtype=torch.float64)


def bootstrap_interval(
    data: Any,
    statistic: Callable[[torch.Tensor], float] | None = None,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    method: str = "bca",
    debias: bool = False,
    jackknife_groups: int = 50,
) -> dict[str, Any]:
    """Bootstrap (1 - alpha) interval of statistic(data), resampling rows of data (N, ...) with replacement.

    Returns {"estimate", "low", "high", "bias", "z0", "acceleration", "method", "debiased"}.
    statistic defaults to the mean of all values.

    - "bca" (default): Efron's bias-corrected and accelerated interval. With
      G the replicates' distribution, z0 = Phi^-1(G(estimate)) (ties count
      half; the share is kept within [1/(2B), 1 - 1/(2B)]) and the
      acceleration a = sum d^3 / (6 (sum d^2)^1.5), d the deviations of the
      delete-a-group jackknife values (at most `jackknife_groups` groups) from
      their mean; the bounds are G's quantiles at
      Phi(z0 + (z0 + z) / (1 - a (z0 + z))) for z = Phi^-1(alpha/2), Phi^-1(1 - alpha/2).
    - "percentile": G's alpha/2 and 1 - alpha/2 quantiles.
    - "basic": those reflected about the estimate (2 theta - q_hi, 2 theta - q_lo).

    A percentile-type interval contains the estimate only when the estimate
    lies inside the bulk of the replicates. A statistic whose resamples are
    shifted far off by the duplicates resampling makes (the Fréchet distance
    at small n: a resample with duplicates has a noisier covariance and a
    larger distance) has every replicate above the estimate, and then no
    quantile of the replicates contains it. `debias=True` removes that shift,
    bias = mean(replicates) - estimate (the bootstrap's estimate of the
    statistic's finite-sample bias, returned as "bias"), from the replicates
    first: the interval is then one of the statistic's expected value at this
    sample size (what repeated runs with fresh samples scatter around), not
    of its infinite-sample limit, which lies about `bias` lower.
    """
    x = batch_2d(data, "data")
    if not 0 < alpha < 1:
        raise ScalespaceError(f"alpha: must be in (0, 1), got {alpha}; pass e.g. 0.05")
    if n_boot < 2:
        raise ScalespaceError(f"n_boot: must be >= 2, got {n_boot}; pass e.g. 200")
    if method not in BOOTSTRAP_METHODS:
        raise ScalespaceError(f"method: unknown {method!r}; choose one of {', '.join(map(repr, BOOTSTRAP_METHODS))}")
    stat = statistic or (lambda t: float(t.mean()))
    g = torch.Generator().manual_seed(seed)
    reps = torch.tensor(
        [float(stat(x[torch.randint(x.shape[0], (x.shape[0],), generator=g)])) for _ in range(n_boot)],
        dtype=torch.float64,
    )
    theta = float(stat(x))
    bias = float(reps.mean()) - theta
    if debias:
        reps = reps - bias
    out: dict[str, Any] = {"estimate": theta, "bias": bias, "method": method, "debiased": bool(debias),
                           "z0": None, "acceleration": None}
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    if method == "bca":
        share = (float((reps < theta).sum()) + 0.5 * float((reps == theta).sum())) / n_boot
        share = min(max(share, 0.5 / n_boot), 1 - 0.5 / n_boot)
        z0 = _normal_ppf(share)
        jack = _jackknife(x, stat, jackknife_groups)
        d = jack.mean() - jack
        den = 6.0 * float((d * d).sum()) ** 1.5
        a = float((d**3).sum()) / den if den > 0 else 0.0
        levels = []
        for p in (alpha / 2, 1 - alpha / 2):
            z = z0 + _normal_ppf(p)
            levels.append(_normal_cdf(z0 + z / (1 - a * z)) if 1 - a * z > 0 else (0.0 if p < 0.5 else 1.0))
        q = torch.tensor(levels, dtype=torch.float64)
        out["z0"], out["acceleration"] = z0, a
    lo, hi = (float(v) for v in torch.quantile(reps, q))
    if method == "basic":
        lo, hi = 2 * theta - hi, 2 * theta - lo
    out["low"], out["high"] = lo, hi
    return out


def bootstrap_ci(
    data: Any,
    statistic: Callable[[torch.Tensor], float] | None = None,
    *,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    method: str = "bca",
    debias: bool = False,
) -> tuple[float, float]:
    """(low, high) of bootstrap_interval (BCa by default; see there for the methods and `debias`)."""
    r = bootstrap_interval(data, statistic, n_boot=n_boot, alpha=alpha, seed=seed, method=method, debias=debias)
    return r["low"], r["high"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with `dof` degrees of freedom."""
    if not dof > 0:
        raise ScalespaceError(f"dof: must be > 0, got {dof}")
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, dof: float) -> float:
    """The p-quantile of Student's t with `dof` degrees of freedom (bisection on the CDF, to ~1e-12)."""
    if not 0 < p < 1:
        raise ScalespaceError(f"p: must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, dof) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values: Any, alpha: float = 0.05) -> tuple[float, float]:
    """Student-t (1 - alpha) interval of the mean of k >= 2 values: mean -/+ t_{1-alpha/2, k-1} s / sqrt(k).

    s is the unbiased standard deviation; the interval is exact for normally
    distributed values (e.g. a figure over independent seeds) and widens with
    few values (k = 3: t = 4.30).
    """
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    k = v.numel()
    if k < 2:
        raise ScalespaceError(f"values: the t interval needs at least 2 values, got {k}; add seeds")
    if not 0 < alpha < 1:
        raise ScalespaceError(f"alpha: must be in (0, 1), got {alpha}; pass e.g. 0.05")
    m, s = float(v.mean()), float(v.std(unbiased=True))
    half = student_t_quantile(1 - alpha / 2, k - 1) * s / math.sqrt(k)
    return m - half, m + half


def nearest_neighbour_distance(
    samples: Any,
    train: torch.Tensor | Iterable[torch.Tensor],
    chunk: int = 1024,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample L2 distance to the nearest training item, and its index.

    samples (B, ...) and train (N, ...) (or an iterable of train batches) are
    flattened per item; train is streamed in chunks of `chunk` rows, so only a
    (B, chunk) distance block is held at once. Returns (dist (B,) float64 in
    pixel units, index (B,) int64 into train, first index on ties).
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise ScalespaceError(f"chunk: must be a positive int, got {chunk!r}; pass e.g. 1024")
    dev = torch.device(device)
    s = batch_2d(samples, "samples").to(dev)
    s_sq = (s * s).sum(dim=1)
    best = torch.full((s.shape[0],), float("inf"), dtype=torch.float64, device=dev)
    best_idx = torch.full((s.shape[0],), -1, dtype=torch.int64, device=dev)
    best_row = torch.zeros_like(s)
    if isinstance(train, torch.Tensor):
        full = train
        batches: Iterable[Any] = (full[i : i + chunk] for i in range(0, full.shape[0], chunk))
    else:
        batches = train
    offset = 0
    for tb in batches:
        t = batch_2d(tb, "train").to(dev)
        if t.shape[1] != s.shape[1]:
            raise ScalespaceError(f"train: items have {t.shape[1]} values, samples {s.shape[1]}; pass images of one shape")
        # |s - t|^2 via the Gram matrix is fast but only good to rounding; used just to rank.
        d2 = s_sq[:, None] + (t * t).sum(dim=1)[None, :] - 2 * (s @ t.T)
        v, j = d2.min(dim=1)
        better = v < best
        best[better], best_idx[better], best_row[better] = v[better], j[better] + offset, t[j[better]]
        offset += t.shape[0]
    if offset == 0:
        raise ScalespaceError("train: empty; pass at least one training image")
    # Recompute the winners' distances directly so that exact duplicates give exactly 0.
    return (s - best_row).norm(dim=1).cpu(), best_idx.cpu()


def memorisation_ratio(
    samples: Any, train: torch.Tensor | Iterable[torch.Tensor], heldout: Any, chunk: int = 1024
) -> float:
    """median NN distance (samples -> train) / median NN distance (held-out -> train).

    About 1 when samples are as far from the training set as fresh data;
    well below 1 suggests copying. One pass over train serves both sets.
    """
    s, h = batch_2d(samples, "samples"), batch_2d(heldout, "heldout")
    if s.shape[1] != h.shape[1]:
        raise ScalespaceError(f"heldout: items have {h.shape[1]} values, samples {s.shape[1]}; pass images of one shape")
    dist, _ = nearest_neighbour_distance(torch.cat([s, h]), train, chunk=chunk)
    # quantile(0.5) averages the two middle values; Tensor.median would take the lower one.
    ms, mh = float(dist[: s.shape[0]].quantile(0.5)), float(dist[s.shape[0] :].quantile(0.5))
    if mh == 0:
        raise ScalespaceError("heldout: median distance to train is 0 (held-out images are in train); deduplicate the split")
    return ms / mh
