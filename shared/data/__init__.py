"""Data sets that ship offline (fashion-mnist, digits, gaussian-mixture)."""

from scalespace.data.datasets import DATASETS, DataSplit, dataset_shape, gaussian_mixture_params, load_dataset

__all__ = ["DATASETS", "DataSplit", "dataset_shape", "gaussian_mixture_params", "load_dataset"]
