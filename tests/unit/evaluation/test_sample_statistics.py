"""`sample` jobs: per-step measures chosen by `statistics`, the final Fréchet distance in the manifest."""

import json

import pytest

from scalespace import ScalespaceError
from scalespace.jobs import parse_spec, run_job
from scalespace.storage import LocalStore


def test_sample_job_statistics_flag_and_final_quality(tmp_path):
    spec = {"kind": "sample", "process": "blurring", "data": "digits", "n": 12, "steps": 10, "device": "cpu",
            "statistics": ["mean", "histogram_entropy", "kl_gaussian", "fd_data"]}
    m = run_job(spec, LocalStore(tmp_path))
    steps = json.loads((tmp_path / m["job_id"] / "trajectory.json").read_text())["steps"]
    assert len(steps) == 11 and [s["index"] for s in steps] == sorted((s["index"] for s in steps), reverse=True)
    assert set(steps[0]) == {"index", "t", "mean", "histogram_entropy", "kl_gaussian", "fd_data"}
    # at the start the samples are noise: far from the data, near N(0, I); at the end the reverse
    fd = [s["fd_data"] for s in steps]
    kl = [s["kl_gaussian"] for s in steps]
    assert fd[0] > 4 * fd[-1] and kl[0] < kl[-1]  # 12 samples: the final FD is mostly sampling floor
    q = m["quality"]["fd"]
    assert q["n_samples"] == 12 and q["n_reference"] == 360 and q["fd"] == pytest.approx(fd[-1], rel=1e-9)
    assert m["summary"]["quality"] == {"fd": q["fd"], "n_samples": 12}


def test_sample_job_defaults_are_unchanged(tmp_path):
    spec = parse_spec({"kind": "sample", "process": "vp", "data": "digits", "n": 4})
    assert spec.statistics == ["mean", "variance", "conditional_entropy"] and spec.quality == ["fd"]
    m = run_job({"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 5, "quality": []}, LocalStore(tmp_path))
    steps = json.loads((tmp_path / m["job_id"] / "trajectory.json").read_text())["steps"]
    assert set(steps[0]) == {"index", "t", "mean", "variance", "conditional_entropy"}
    assert m["quality"] == {} and m["summary"]["quality"] == {"n_samples": 4}
    with pytest.raises(ScalespaceError, match=r"^statistics\.0: "):
        parse_spec({"kind": "sample", "process": "vp", "data": "digits", "statistics": ["entropy"]})
