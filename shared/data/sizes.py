"""How many images each data set's splits hold, without loading them (for admission's memory estimate)."""

from __future__ import annotations

#: images in each data set's (train, held-out) splits: scalespace.data.datasets.load_dataset
SPLIT_SIZES: dict[str, tuple[int, int]] = {
    "fashion-mnist": (60_000, 10_000),
    "digits": (1_437, 360),  # the first 80 % of scikit-learn's 1,797
    "gaussian-mixture": (4_096, 1_024),
}


def split_sizes(name: str, limit: int | None = None) -> tuple[int, int]:
    """(training images used, with `limit` the first ones only; held-out images) of data set `name`."""
    n_train, n_heldout = SPLIT_SIZES.get(name, (60_000, 10_000))
    return (min(limit, n_train) if limit else n_train), n_heldout


__all__ = ["SPLIT_SIZES", "split_sizes"]
