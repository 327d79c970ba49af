"""The training images the kernel benchmarks run on: Fashion-MNIST from an .npz, the installed data set, or random stand-ins."""

from __future__ import annotations


def load_fashion(npz: str | None):
    """(60000, 1, 28, 28) float32 in [-1, 1] and where it came from."""
    import numpy as np
    import torch

    if npz:
        try:
            with np.load(npz, allow_pickle=False) as f:
                key = "train" if "train" in f.files else f.files[0]
                x = f[key]
            return torch.from_numpy(x.astype(np.float32)).reshape(-1, 1, 28, 28) / 127.5 - 1, f"fashion-mnist ({npz})"
        except Exception as e:  # a wrong path must not end the run
            print(f"# could not read {npz}: {e}", flush=True)
    try:
        from scalespace.data import load_dataset

        return load_dataset("fashion-mnist").images, "fashion-mnist (installed data set)"
    except Exception:
        g = torch.Generator().manual_seed(0)
        return torch.rand(60_000, 1, 28, 28, generator=g) * 2 - 1, "RANDOM images of Fashion-MNIST's shape (no data found)"
