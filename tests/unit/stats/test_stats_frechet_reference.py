"""Fréchet distances of Moments to a reference Gaussian (FrechetReference, fd_moments): identities and real data."""

import pytest
import torch

from scalespace.data import load_dataset
from scalespace.stats.frechet import fd_moments
from scalespace.stats.moments import Moments


def test_frechet_identities_through_moments():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 6, 6, generator=g, dtype=torch.float64) * 0.3 + torch.linspace(-1, 1, 36).reshape(1, 1, 6, 6)
    mx = Moments.from_samples(x, full=True)
    assert fd_moments(mx, mx) == pytest.approx(0.0, abs=1e-10)
    c = 0.37
    shifted = fd_moments(Moments.from_samples(x + c, full=True), mx)
    assert shifted == pytest.approx(c * c * 36, rel=1e-9)  # |c|^2 N
    # the diagonal form (large images) obeys the same identities
    dx = Moments.from_samples(x)
    assert fd_moments(dx, dx) == 0.0
    assert fd_moments(Moments.from_samples(x + c), dx) == pytest.approx(c * c * 36, rel=1e-12)


def test_frechet_between_fashion_halves_is_small_and_positive():
    x = load_dataset("fashion-mnist", "heldout").images.double()
    a, b = Moments.from_samples(x[:5000], full=True), Moments.from_samples(x[5000:], full=True)
    fd = fd_moments(a, b)
    energy = float(a.var(unbiased=True).sum())
    assert 0 < fd < 0.03 * energy
    assert fd_moments(Moments.from_samples(x[:5000] + 0.5, full=True), b) > fd + 0.2 * 784
