"""Estimators on sample sets: moments, Gaussian (Fréchet) distances, entropies, features and quality.

Pure torch (float64 where it matters); no Celery or HTTP. Accumulators
(`Moments`, `MeanAccumulator`) stream, merge exactly across workers and
round-trip through JSON via to_dict/from_dict.

Modules: moments (streaming Moments), frechet (Fréchet distance, KL and
entropy of Gaussians, FrechetReference for many sets against one), entropy
(histogram and Monte Carlo entropies), features (feature extractors,
Inception), quality (FID, KID, bootstrap, memorisation), marginals (marginal
densities p_t of a process for the Monte Carlo entropies), reference_cache
(reference features cached in the store), two_sample (the MMD permutation
test). What is measured with them, the property checks, plots and the
report, is `scalespace.evaluation`.
"""

from scalespace.stats.entropy import (
    MeanAccumulator,
    conditional_entropy_gaussian,
    histogram_entropy,
    information_loss_mc,
    marginal_entropy_mc,
)
from scalespace.stats.features import (
    FeatureExtractor,
    InceptionExtractor,
    PixelExtractor,
    RandomConvExtractor,
    available_extractors,
    get_extractor,
    inception_weights_path,
    register_extractor,
)
from scalespace.stats.frechet import (
    FrechetReference,
    fd_moments,
    frechet_distance,
    frechet_from_moments,
    gaussian_entropy,
    kl_gaussians,
    kl_to_standard_normal,
    logdet_bias,
    moment_matched,
    second_moment,
    trace_sqrt_product,
)
from scalespace.stats.moments import BatchStats, Moments, batch_stats, merge_all
from scalespace.stats.quality import (
    bootstrap_ci,
    bootstrap_interval,
    fid,
    fid_from_features,
    fid_statistic,
    kid,
    memorisation_ratio,
    nearest_neighbour_distance,
    reference_statistics,
    student_t_quantile,
    t_interval,
)
from scalespace.stats.two_sample import mmd_permutation_test

__all__ = [
    "BatchStats",
    "FeatureExtractor",
    "FrechetReference",
    "InceptionExtractor",
    "MeanAccumulator",
    "Moments",
    "PixelExtractor",
    "RandomConvExtractor",
    "available_extractors",
    "batch_stats",
    "bootstrap_ci",
    "bootstrap_interval",
    "conditional_entropy_gaussian",
    "fd_moments",
    "fid",
    "fid_from_features",
    "fid_statistic",
    "frechet_distance",
    "frechet_from_moments",
    "gaussian_entropy",
    "get_extractor",
    "histogram_entropy",
    "inception_weights_path",
    "information_loss_mc",
    "kid",
    "kl_gaussians",
    "kl_to_standard_normal",
    "logdet_bias",
    "marginal_entropy_mc",
    "memorisation_ratio",
    "merge_all",
    "mmd_permutation_test",
    "moment_matched",
    "nearest_neighbour_distance",
    "reference_statistics",
    "register_extractor",
    "second_moment",
    "student_t_quantile",
    "t_interval",
    "trace_sqrt_product",
]
