"""Test-wide set-up: Triton runs in interpreter mode without a GPU; every test starts from one seeded generator.

TRITON_INTERPRET must be set before any @triton.jit module is imported, so it
is set here, at import time of the first conftest.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _global_generator_seeded() -> None:
    """Every test starts from the same global torch generator: a test that draws from it without its own
    generator gets the same data whichever tests ran before it (and whether it ran alone or in the suite)."""
    torch.manual_seed(0)
