"""Kernel tests run the Triton kernels in the interpreter on the CPU.

TRITON_INTERPRET must be set before any kernel module is imported (tests/conftest.py
sets it too; setdefault keeps whichever came first). Every buffer a kernel
wrapper allocates is poisoned (NaN, or -7777 for integers) during these tests.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import triton  # noqa: E402,F401  (a test dependency: a missing triton fails here, it is not skipped)


@pytest.fixture(autouse=True)
def _poisoned_outputs():
    from scalespace.kernels import _triton

    _triton.set_poison(True)
    yield
    _triton.set_poison(False)


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seeded generator per test: inputs are random, never zeros."""
    return torch.Generator().manual_seed(20240607)


@pytest.fixture
def rand(gen: torch.Generator):
    """rand(*shape, dtype=, scale=, shift=): standard normal * scale + shift, with no zeros."""

    def make(*shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
        x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
        x = torch.where(x == 0, torch.full_like(x, 0.5), x)
        return x.to(dtype)

    return make
