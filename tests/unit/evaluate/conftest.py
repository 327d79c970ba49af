"""Shared fixtures of the evaluate tests: small data and a fast evaluation spec."""

from __future__ import annotations

import pytest
import torch

from shared.data import load_dataset


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


def fast_spec(process: str, **over) -> dict:
    """A full evaluation (every part) at the smallest sizes that still decide every check."""
    spec = {
        "kind": "evaluate", "process": process, "data": "digits", "n": 64, "eval_steps": 8,
        "n_invariance": 16, "invariance_steps": 3, "n_reverse": 48, "reverse_steps": 25,
        "robustness": {"n": 8, "steps": 4, "seeds": [0, 1, 2], "step_counts": [2, 4], "n_boot": 10, "eps": [0.01, 1.0]},
        "density_cells": 400, "device": "cpu",
    }
    spec.update(over)
    return spec
