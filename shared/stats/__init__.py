"""Statistics of sample sets: moments, Gaussian distances, entropies, quality.

Pure torch (float64 where it matters); no Celery or HTTP. Accumulators
(`Moments`, `MeanAccumulator`) stream, merge exactly across workers and
round-trip through JSON via to_dict/from_dict.
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
    frechet_distance,
    frechet_from_moments,
    gaussian_entropy,
    kl_to_standard_normal,
    trace_sqrt_product,
)
from scalespace.stats.moments import BatchStats, Moments, batch_stats, merge_all
from scalespace.stats.quality import (
    bootstrap_ci,
    fid,
    fid_from_features,
    fid_statistic,
    kid,
    memorisation_ratio,
    nearest_neighbour_distance,
    reference_statistics,
)

__all__ = [
    "BatchStats",
    "FeatureExtractor",
    "InceptionExtractor",
    "MeanAccumulator",
    "Moments",
    "PixelExtractor",
    "RandomConvExtractor",
    "available_extractors",
    "batch_stats",
    "bootstrap_ci",
    "conditional_entropy_gaussian",
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
    "kl_to_standard_normal",
    "marginal_entropy_mc",
    "memorisation_ratio",
    "merge_all",
    "nearest_neighbour_distance",
    "reference_statistics",
    "register_extractor",
    "trace_sqrt_product",
]
