"""Golden results: a fixed set of jobs whose samples and statistics must not change by a single bit.

One sample job per process and sampler (with the kernels in deterministic
mode and with the torch references) and one small evaluate job per process.
Their samples, trajectory statistics and report figures were recorded by
this module (`SCALESPACE_WRITE_GOLDEN=1 python -m pytest tests/unit/test_golden.py`)
and are compared bit for bit: a refactoring of the library must leave every
one of them as it was. Regenerate them only for a change that is meant to
change results, and say so in the changelog.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scalespace.jobs.run import run_job
from scalespace.kernels import dispatch
from scalespace.storage.local import LocalStore

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("SCALESPACE_WRITE_GOLDEN", "") == "1"

_SMALL = {"kind": "sample", "data": "digits", "data_limit": 128, "n": 4, "steps": 5, "batch_size": 3,
          "seed": 11, "device": "cpu"}
_OSMOSIS = {"K": 5, "t_max": 4.0}
SAMPLE_CASES = {
    "vp-ancestral": {"process": "vp"},
    "vp-cosine-ancestral": {"process": "vp", "process_params": {"schedule": "cosine"}},
    "vp-ddim-eta0": {"process": "vp", "sampler": "ddim", "eta": 0.0},
    "vp-ddim-eta05": {"process": "vp", "sampler": "ddim", "eta": 0.5},
    "ve-ancestral": {"process": "ve"},
    "ve-ddim-eta1": {"process": "ve", "sampler": "ddim", "eta": 1.0},
    "blurring-ancestral": {"process": "blurring"},
    "heat-heat": {"process": "heat"},
    "osmosis-explicit": {"process": "osmosis", "process_params": _OSMOSIS},
    "osmosis-implicit": {"process": "osmosis", "process_params": {**_OSMOSIS, "scheme": "implicit"}},
}
MODES = ("reference", "triton")

EVALUATE_SPEC = {
    "kind": "evaluate", "data": "digits", "n": 32, "eval_steps": 5, "n_invariance": 32, "invariance_steps": 8,
    "n_reverse": 16, "reverse_steps": 24, "data_limit": 256,
    "robustness": {"n": 4, "steps": 3, "seeds": [0, 1], "step_counts": [2, 3], "n_boot": 5, "eps": [0.01, 1.0]},
    "density_cells": 100, "device": "cpu", "seed": 3,
}
EVALUATE_CASES = {
    "vp": {"process": "vp"},
    "ve": {"process": "ve"},
    "blurring": {"process": "blurring"},
    "heat": {"process": "heat"},
    "osmosis": {"process": "osmosis", "process_params": {"K": 6, "t_max": 6.0}, "reverse_steps": 6},
}


def _run(spec: dict, mode: str, root: Path) -> tuple[LocalStore, dict]:
    store = LocalStore(root)
    with dispatch.override(kernels=mode, deterministic=True):
        manifest = run_job(spec, store)
    return store, manifest


def _sample_result(name: str, mode: str, tmp_path: Path) -> dict:
    store, manifest = _run({**_SMALL, **SAMPLE_CASES[name]}, mode, tmp_path / mode)
    job = manifest["job_id"]
    with np.load(io.BytesIO(store.get("jobs", job, "samples.npz")), allow_pickle=False) as npz:
        samples = npz["samples"]
    trajectory = json.loads(store.get("jobs", job, "trajectory.json"))["steps"]
    return {"samples": samples, "trajectory": trajectory}


#: what differs between two runs of one spec: ids, clocks and timings
VOLATILE = frozenset({"created_at", "job_id", "timings"})


def _figures(report: object) -> object:
    """The numbers of a report, in order: what must stay bit-identical (text and timings aside)."""
    if isinstance(report, dict):
        return {k: _figures(v) for k, v in sorted(report.items()) if not k.endswith("_s") and k not in VOLATILE}
    if isinstance(report, list):
        return [_figures(v) for v in report]
    if isinstance(report, float) and not math.isfinite(report):
        return repr(report)
    return report


def _assert_same(got: object, want: object, where: str) -> None:
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, f"{where}: {got!r} != {want!r}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(SAMPLE_CASES))
def test_sample_jobs_are_bit_identical_to_the_golden_results(name, mode, tmp_path):
    got = _sample_result(name, mode, tmp_path)
    path = GOLDEN / f"sample-{name}-{mode}.npz"
    traj_path = GOLDEN / f"sample-{name}-{mode}.trajectory.json"
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        np.savez_compressed(path, samples=got["samples"])
        traj_path.write_text(json.dumps(got["trajectory"], indent=1) + "\n")
    with np.load(path, allow_pickle=False) as npz:
        want = npz["samples"]
    assert got["samples"].dtype == want.dtype and got["samples"].shape == want.shape
    diff = float(np.abs(got["samples"].astype(np.float64) - want).max())
    assert np.array_equal(got["samples"], want), f"{name} ({mode}): samples moved by up to {diff:.3g}"
    _assert_same(got["trajectory"], json.loads(traj_path.read_text()), f"{name} ({mode}) trajectory")


@pytest.mark.parametrize("name", list(EVALUATE_CASES))
def test_evaluate_reports_are_bit_identical_to_the_golden_results(name, tmp_path):
    torch.set_num_threads(1)
    try:
        store, manifest = _run({**EVALUATE_SPEC, **EVALUATE_CASES[name]}, "reference", tmp_path)
    finally:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    report = json.loads(store.get("jobs", manifest["job_id"], "report.json"))
    got = json.loads(json.dumps(_figures(report)))
    path = GOLDEN / f"evaluate-{name}.json"
    if WRITE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    _assert_same(got, json.loads(path.read_text()), f"evaluate {name}")


def test_the_comparison_catches_a_changed_figure():
    """The comparison itself: one changed bit of one figure, or one missing key, is a failure."""
    want = {"a": [1.0, {"b": 0.1}], "c": "x"}
    _assert_same(json.loads(json.dumps(want)), want, "same")
    with pytest.raises(AssertionError, match=r"a\[1\]\.b"):
        _assert_same({"a": [1.0, {"b": float(np.nextafter(0.1, 1.0))}], "c": "x"}, want, "moved")
    with pytest.raises(AssertionError, match="keys"):
        _assert_same({"a": [1.0, {"b": 0.1}]}, want, "missing")
