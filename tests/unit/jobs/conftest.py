"""Fixtures for the job tests: one thread, and train specs small enough for seconds on a CPU."""

from __future__ import annotations

from typing import Any

import pytest


#: a U-Net of about 2,500 parameters: enough to exercise every code path
TEST_NETWORK = {"channels": 8, "channel_mults": [1], "groups": 2}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def make_train_spec():
    """make_train_spec(process, **overrides): a train spec on digits that runs in a few seconds."""
    return train_spec


def train_spec(process: str = "vp", **overrides: Any) -> dict[str, Any]:
    params = {"vp": {"T": 40}, "ve": {"T": 40}, "blurring": {"T": 40}, "heat": {"K": 8}, "osmosis": {"K": 6}}[process]
    spec = {
        "kind": "train",
        "process": process,
        "process_params": params,
        "data": "digits",
        "data_limit": 64,
        "network": dict(TEST_NETWORK),
        "steps": 8,
        "batch_size": 16,
        "warmup_steps": 2,
        "eval_samples": 8,
        "eval_steps": 4 if process in ("vp", "ve", "blurring") else None,
        "checkpoint_every": 4,
        "log_every": 2,
        "device": "cpu",
    }
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}
