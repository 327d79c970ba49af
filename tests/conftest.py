"""Test-wide set-up: Triton kernels run in interpreter mode on machines without a GPU.

TRITON_INTERPRET must be set before any @triton.jit module is imported, so it
is set here, at import time of the first conftest.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
