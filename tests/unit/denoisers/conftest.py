"""Fixtures for the denoiser tests (checkpoints, objectives, the oracle): one thread for tiny networks."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield

