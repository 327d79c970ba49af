"""Fixtures of the evaluate tests: the digits training split, and one torch thread per test."""

from __future__ import annotations

import pytest
import torch

from scalespace.data import load_dataset


@pytest.fixture(autouse=True)
def one_thread():
    """These tests run many small tensor operations: with two OpenMP threads on two busy cores each
    operation waits for the other thread (15-40x slower here); one thread avoids that."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> torch.Tensor:
    return load_dataset("digits", "train").images
