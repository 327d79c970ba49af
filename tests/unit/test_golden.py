"""Golden results: a fixed set of jobs whose samples and statistics must not change.

One sample job per process and sampler (with the kernels in deterministic
mode and with the torch references) and one small evaluate job per process.
Their samples, trajectory statistics and report figures were recorded by
this module (`SCALESPACE_WRITE_GOLDEN=1 python -m pytest tests/unit/test_golden.py`)
together with the platform they were recorded on (`golden/platform.json`:
CPU vendor, family, model and vector instruction sets, torch, its CPU
capability and numpy). Regenerate them only for a change that is meant to
change results, or to move the recording platform, and say so in the
changelog.

On the recording platform every result is compared bit for bit: a
refactoring of the library must leave every one of them as it was. On
another platform the matrix products take other BLAS kernels (the summation
order follows the CPU's vector width), so the last bits move and the
samples differ by a few 1e-6. There the results are compared within
tolerances set well above those moves and far below what a change of a
formula does: samples to 1e-4, trajectory statistics to 1e-4 + 1e-3
relative, report figures to 1e-6 + 1e-2 relative and the report's text with
its numbers masked; counts, flags and keys exactly. (Measured between two
machine types: samples 5.6e-6, trajectory 1.3e-5, report figures 6.4e-4
relative above 1e-6.)
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from scalespace.jobs.run import run_job
from scalespace.kernels import dispatch
from scalespace.storage.local import LocalStore

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("SCALESPACE_WRITE_GOLDEN", "") == "1"

#: instruction-set flags that choose the BLAS and vector kernels, hence the summation order
_ISA_PREFIXES = ("sse", "avx", "fma", "f16c", "amx", "asimd", "sve")


def platform_fingerprint() -> dict:
    """What decides the last bits of a CPU result: the CPU, its vector instruction sets, torch and numpy."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in {"vendor_id", "cpu family", "model", "flags", "CPU implementer", "CPU part", "Features"}:
                fields.setdefault(key, value.strip())
    except OSError:
        pass
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    cpu = ("vendor_id", "cpu family", "model") if "vendor_id" in fields else ("CPU implementer", "CPU part")
    return {
        "machine": platform.machine(),
        "cpu": " ".join(fields.get(k, "?") for k in cpu),
        "isa": sorted(f for f in flags if f.startswith(_ISA_PREFIXES)),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": np.__version__,
    }


PLATFORM_PATH = GOLDEN / "platform.json"
if WRITE:
    GOLDEN.mkdir(exist_ok=True)
    PLATFORM_PATH.write_text(json.dumps(platform_fingerprint(), indent=1, sort_keys=True) + "\n")
#: bit for bit on the platform the goldens were recorded on, within the tolerances below elsewhere
STRICT = json.loads(PLATFORM_PATH.read_text()) == platform_fingerprint()


@dataclass(frozen=True)
class Tol:
    """|got - want| <= atol + rtol |want| for numbers; text compared with its numbers masked."""

    atol: float
    rtol: float


SAMPLES_ATOL = 1e-4
TRAJECTORY_TOL = Tol(atol=1e-4, rtol=1e-3)
REPORT_TOL = Tol(atol=1e-6, rtol=1e-2)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

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


def _sample_result(name: str, mode: str, tmp_path: Path, **changes: object) -> dict:
    store, manifest = _run({**_SMALL, **SAMPLE_CASES[name], **changes}, mode, tmp_path / mode)
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


def _assert_same(got: object, want: object, where: str, tol: Tol | None = None) -> None:
    """Every key, item and value of want in got: bit for bit, or within tol where given."""
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, f"{where}: {got!r} != {want!r}"
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            _assert_same(got[k], want[k], f"{where}.{k}", tol)
    elif isinstance(want, list):
        assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]", tol)
    elif tol is not None and isinstance(want, float):
        allowed = f"allowed {tol.atol:g} + {tol.rtol:g} relative"
        assert abs(got - want) <= tol.atol + tol.rtol * abs(want), (
            f"{where}: {got!r} != {want!r} (differs by {abs(got - want):.3g}, {allowed})")
    elif tol is not None and isinstance(want, str):
        assert _NUMBER.sub("#", got) == _NUMBER.sub("#", want), f"{where}: {got!r} != {want!r} (numbers aside)"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _assert_samples(got: np.ndarray, want: np.ndarray, where: str, strict: bool) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (
        f"{where}: {got.dtype}{got.shape} != {want.dtype}{want.shape}")
    diff = float(np.abs(got.astype(np.float64) - want).max())
    if strict:
        assert np.array_equal(got, want), f"{where}: samples moved by up to {diff:.3g}"
    else:
        assert diff <= SAMPLES_ATOL, (
            f"{where}: samples moved by up to {diff:.3g} (allowed {SAMPLES_ATOL:g} off the recording platform)")


def _mode_note() -> str:
    return "bit for bit" if STRICT else "within tolerance: another platform than the recording one"


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
    _assert_samples(got["samples"], want, f"{name} ({mode}, {_mode_note()})", STRICT)
    _assert_same(got["trajectory"], json.loads(traj_path.read_text()), f"{name} ({mode}, {_mode_note()}) trajectory",
                 None if STRICT else TRAJECTORY_TOL)


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
    _assert_same(got, json.loads(path.read_text()), f"evaluate {name} ({_mode_note()})", None if STRICT else REPORT_TOL)


def test_the_comparison_catches_a_changed_figure():
    """The comparison itself: one changed bit of one figure, or one missing key, is a failure."""
    want = {"a": [1.0, {"b": 0.1}], "c": "x"}
    _assert_same(json.loads(json.dumps(want)), want, "same")
    with pytest.raises(AssertionError, match=r"a\[1\]\.b"):
        _assert_same({"a": [1.0, {"b": float(np.nextafter(0.1, 1.0))}], "c": "x"}, want, "moved")
    with pytest.raises(AssertionError, match="keys"):
        _assert_same({"a": [1.0, {"b": 0.1}]}, want, "missing")


def test_off_the_recording_platform_the_comparison_still_catches_a_changed_result(tmp_path):
    """The tolerances: a DDIM eta of 0.001 instead of 0, a figure 2 % off, a count or a word changed all fail."""
    with np.load(GOLDEN / "sample-vp-ddim-eta0-reference.npz", allow_pickle=False) as npz:
        want = npz["samples"]
    moved = _sample_result("vp-ddim-eta0", "reference", tmp_path, eta=0.001)["samples"]
    with pytest.raises(AssertionError, match="samples moved"):
        _assert_samples(moved, want, "eta 0.001", strict=False)
    _assert_samples(want + np.float32(SAMPLES_ATOL / 2), want, "a move within the tolerance", strict=False)

    report = json.loads((GOLDEN / "evaluate-vp.json").read_text())
    _assert_same(json.loads(json.dumps(report)), report, "same", REPORT_TOL)
    check = report["checks"][1]
    figure, text = check["figure"], check["explanation"]
    assert figure > 0.01 and isinstance(report["n_forward"], int)
    for change, where in (
        ({"figure": figure * 1.02}, r"checks\[1\]\.figure.*differs"),
        ({"explanation": text.replace(" ", "  ", 1)}, r"checks\[1\]\.explanation.*numbers aside"),
        ({"holds": not check["holds"]}, r"checks\[1\]\.holds"),
    ):
        changed = json.loads(json.dumps(report))
        changed["checks"][1].update(change)
        with pytest.raises(AssertionError, match=where):
            _assert_same(changed, report, "changed", REPORT_TOL)
    with pytest.raises(AssertionError, match="n_forward"):
        _assert_same({**report, "n_forward": report["n_forward"] + 1}, report, "changed", REPORT_TOL)
    within = json.loads(json.dumps(report))
    within["checks"][1].update(figure=figure * (1 + REPORT_TOL.rtol / 2), explanation=_NUMBER.sub("7", text))
    _assert_same(within, report, "within", REPORT_TOL)


def test_the_recording_platform_is_told_by_the_cpu_its_instruction_sets_and_the_libraries():
    here = platform_fingerprint()
    assert here["torch"] == torch.__version__ and here["numpy"] == np.__version__ and here["machine"]
    for field, other in (("isa", [*here["isa"], "avx10_2"]), ("cpu", here["cpu"] + "0"),
                         ("torch_cpu_capability", "DEFAULT" if here["torch_cpu_capability"] != "DEFAULT" else "AVX2")):
        assert {**here, field: other} != here, field
