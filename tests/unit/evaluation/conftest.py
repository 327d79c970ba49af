"""Fixtures of the evaluation tests: the digits training split, and one torch thread per test."""

from __future__ import annotations

import pytest
import torch

from scalespace.data import load_dataset


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    return load_dataset("digits", "train").images
