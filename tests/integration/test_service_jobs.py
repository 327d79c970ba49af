"""The service end to end: HTTP API -> Redis -> Celery worker -> SeaweedFS S3 -> presigned download.

A job run by the service gives the same results as the same spec run in
embedded mode; an idempotency key gives one job and one execution.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from service_infra import download, inprocess_worker, submit, wait_for, wait_state

from scalespace.jobs import run_job
from scalespace.storage import LocalStore

pytestmark = pytest.mark.integration

SAMPLE = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 12, "seed": 7}


def _download(job: dict, api: Any) -> dict[str, bytes]:
    """Every artifact through its presigned URL (no credentials sent); the manifest also through the API's
    artifact route (the same bytes)."""
    out = {}
    for a in job["artifacts"]:
        assert "X-Amz-Signature" in a["url"], a["url"]
        r = download(api, a["url"])
        assert r.status_code == 200, (a["name"], r.status_code)
        out[a["name"]] = r.content
    route = download(api, f"http://testserver/v1/jobs/{job['id']}/artifacts/manifest.json")
    assert route.status_code == 200 and route.content == out["manifest.json"]
    return out


def _samples(blob: bytes) -> np.ndarray:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return z["samples"]


def test_sample_job_over_http_matches_embedded(api, settings, tmp_path):
    with inprocess_worker(settings):
        job = submit(api, SAMPLE, lane="interactive")
        # the running worker may take the job before the submit response is written
        assert job["state"] in ("queued", "running") and job["lane"] == "interactive"
        job = wait_state(api, job["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["attempts"] == 1 and job["progress"]["done"] == job["progress"]["total"] == 12
    # the stopped worker's pulse (heartbeat file, reaper) stopped with it
    wait_for(lambda: not any(t.name == "scalespace-pulse" for t in threading.enumerate()), 15, "the pulse to stop")
    assert not Path(settings.heartbeat_file).exists()
    files = _download(job, api)
    assert {"samples.npz", "grid.png", "trajectory.json", "manifest.json"} <= set(files)
    manifest = json.loads(files["manifest.json"])
    assert manifest["job_id"] == job["id"] and manifest["spec_hash"] == job["spec_hash"]
    from scalespace.storage import S3Store

    published = S3Store.from_settings(settings)  # the one manifest in the bucket, the bytes the API served
    assert published.get("jobs", job["id"], "manifest.json") == files["manifest.json"]
    assert [p for p in published.list("jobs", job["id"]) if p.endswith("manifest.json")] == ["manifest.json"]
    # the same spec, embedded, in a local folder: identical samples (sample k depends on (seed, k, step) only)
    local = run_job(SAMPLE, LocalStore(tmp_path / "embedded"), job_id="embedded-twin")
    assert local["spec_hash"] == manifest["spec_hash"]
    embedded = _samples((tmp_path / "embedded" / "embedded-twin" / "samples.npz").read_bytes())
    np.testing.assert_array_equal(_samples(files["samples.npz"]), embedded)
    # the sha256 in the job record is the object's
    import hashlib

    for a in job["artifacts"]:
        if a["sha256"]:
            assert hashlib.sha256(files[a["name"]]).hexdigest() == a["sha256"]


def test_evaluate_job_over_http_matches_embedded(api, settings, tmp_path):
    spec = {"kind": "evaluate", "process": "vp", "data": "digits", "data_limit": 64, "checks": ["invariances"],
            "n_invariance": 4, "invariance_steps": 2, "seed": 3}
    with inprocess_worker(settings):
        job = wait_state(api, submit(api, spec)["id"], timeout_s=300)
    assert job["state"] == "succeeded", job["error"]
    files = _download(job, api)
    assert {"report.json", "report.html", "manifest.json"} <= set(files)
    local = run_job(spec, LocalStore(tmp_path / "embedded"), job_id="embedded-eval")
    assert json.loads(files["manifest.json"])["summary"] == json.loads(json.dumps(local["summary"]))
    ours = json.loads(files["report.json"])
    theirs = json.loads((tmp_path / "embedded" / "embedded-eval" / "report.json").read_text())
    for run_specific in ("job_id", "created_at", "timings"):
        ours.pop(run_specific, None), theirs.pop(run_specific, None)
    assert ours == theirs and ours["checks"]


def test_cancel_in_an_evaluations_reverse_phase_stops_it_within_seconds(api, settings):
    # about 2,000 reverse steps of 256 samples: minutes of work on two CPU cores without the cancel
    spec = {"kind": "evaluate", "process": "vp", "data": "digits", "checks": ["reverse"], "n_reverse": 512,
            "reverse_steps": 1000, "seed": 5}
    with inprocess_worker(settings):
        job = submit(api, spec)

        def in_reverse() -> dict | None:
            now = api.get(f"/v1/jobs/{job['id']}").json()
            assert now["state"] in ("queued", "running"), now
            p = now.get("progress") or {}
            return now if p.get("phase") == "reverse" and p.get("done", 0) >= 1 else None

        wait_for(in_reverse, 120, "the reverse phase to start", every_s=0.05)
        t0 = time.monotonic()
        assert api.delete(f"/v1/jobs/{job['id']}").status_code in (200, 202)
        done = wait_state(api, job["id"], timeout_s=60)
        latency = time.monotonic() - t0
    assert done["state"] == "cancelled", done
    p = done["progress"]
    assert p["phase"] == "reverse" and p["done"] < p["total"] == 2 * 1000 + 5  # stopped inside the phase
    assert latency < 5.0, f"cancelled after {latency:.2f} s"


def test_idempotency_key_gives_one_job_and_one_execution(api, settings):
    key = {"Idempotency-Key": "nightly-report-2026-11-28"}
    first = api.post("/v1/jobs", json={"spec": SAMPLE}, headers=key)
    again = api.post("/v1/jobs", json={"spec": SAMPLE}, headers=key)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    other = api.post("/v1/jobs", json={"spec": {**SAMPLE, "seed": 8}}, headers=key)
    assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    with inprocess_worker(settings):
        job = wait_state(api, first.json()["id"])
        third = api.post("/v1/jobs", json={"spec": SAMPLE}, headers=key)  # after it ran: still the same job
    assert job["state"] == "succeeded" and job["attempts"] == 1
    assert third.status_code == 200 and third.json()["id"] == job["id"]
    listed = api.get("/v1/jobs").json()
    assert listed["count"] == 1
    metrics = api.get("/metrics").text
    assert 'scalespace_jobs_submitted_total{kind="sample"} 1.0' in metrics
    assert 'scalespace_jobs_finished_total{kind="sample",state="succeeded"} 1.0' in metrics


def test_sweep_fans_out_and_reports_against_the_previous_one(api, settings):
    sweep = {"kind": "sweep", "name": "it-nightly", "processes": ["vp", "ve"], "data": ["digits"],
             "template": {"kind": "sample", "n": 4, "steps": 10}}
    with inprocess_worker(settings):
        first = wait_state(api, submit(api, sweep, lane="nightly")["id"], timeout_s=180)
        second = wait_state(api, submit(api, sweep, lane="nightly")["id"], timeout_s=180)
    for job in (first, second):
        assert job["state"] == "succeeded", job["error"]
        assert job["children"] == [f"{job['id']}.c000", f"{job['id']}.c001"]
        for child in job["children"]:
            c = api.get(f"/v1/jobs/{child}").json()
            assert c["state"] == "succeeded" and c["parent"] == job["id"] and c["attempts"] == 1
    assert first["summary"]["compared_with"] is None
    assert second["summary"]["compared_with"] == first["id"]
    files = _download(second, api)
    report = json.loads(files["sweep-report.json"])
    assert [c["key"] for c in report["children"]] == ["vp/digits/oracle", "ve/digits/oracle"]
    assert report["regressions"] == [] and report["comparisons"]  # same seeds, same figures
    assert all(c["status"] == "same" for c in report["comparisons"])
    assert b"<h1>Sweep it-nightly</h1>" in files["sweep-report.html"]
