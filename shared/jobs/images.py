"""Encoding samples as artifacts: .npz arrays and a PNG grid (the pictures' grey scale, no labels)."""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from scalespace.evaluation.pictures import grey_levels


def to_npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def grid_png(samples: torch.Tensor, max_images: int = 256, pad: int = 1, scale: int | None = None) -> bytes:
    """A square-ish grid of images (B, C, H, W) as PNG bytes (grey or RGB), on the grey scale of every
    picture (scalespace.evaluation.pictures.grey_levels: -1 black, +1 white, clipped outside [-1, 1])."""
    x = grey_levels(samples[:max_images])
    b, c, h, w = x.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    canvas = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=torch.uint8)
    for k in range(b):
        r, q = divmod(k, cols)
        y0, x0 = pad + r * (h + pad), pad + q * (w + pad)
        canvas[:, y0 : y0 + h, x0 : x0 + w] = x[k]
    arr = canvas.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr[..., :3])
    scale = scale or max(1, 256 // max(canvas.shape[1:]))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
