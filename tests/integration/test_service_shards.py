"""Sharded jobs through the service: the shards are jobs of their own over real Redis, Celery and S3.

The union of the shards is bit-identical to the unsharded job and to the same
spec run embedded; a shard whose worker is killed reruns alone; cancelling the
job reaches every shard; a retry reruns only the shards that ended without
results.
"""

from __future__ import annotations

import io
import json
import signal

import httpx
import numpy as np
import pytest
from service_infra import inprocess_worker, submit, wait_for, wait_progress, wait_state

from scalespace.jobs import run_job
from scalespace.storage import LocalStore, S3Store

pytestmark = pytest.mark.integration

STATS = ["mean", "variance", "conditional_entropy", "histogram_entropy", "kl_gaussian", "fd_data"]
SHARDED = {"kind": "sample", "process": "vp", "data": "digits", "n": 20, "batch_size": 4, "steps": 12, "seed": 5,
           "statistics": STATS, "shards": 3}
#: shards long enough to be caught running (a few hundred oracle steps), short enough to finish
LONG = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 64, "n": 12, "batch_size": 4,
        "steps": 400, "seed": 9, "shards": 3}


def _samples(blob: bytes) -> np.ndarray:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return z["samples"]


def _unsharded(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "shards"}


def _embedded(spec: dict, tmp_path, name: str) -> tuple[np.ndarray, list[dict], dict]:
    store = LocalStore(tmp_path / "embedded")
    manifest = run_job(spec, store, job_id=name)
    return (_samples(store.read_artifact(name, "samples.npz")),
            json.loads(store.read_artifact(name, "trajectory.json"))["steps"], manifest)


def _assert_rows_close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and a
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key, va in ra.items():
            vb = rb[key]
            if isinstance(va, float):
                assert abs(va - vb) <= 1e-12 * max(1.0, abs(va)), (ra["index"], key, va, vb)
            else:
                assert va == vb, (ra["index"], key)


def test_sharded_sample_equals_the_unsharded_job_and_the_embedded_one(api, settings, tmp_path):
    job = submit(api, SHARDED)
    views = []
    with inprocess_worker(settings):
        def running_with_shards():
            view = api.get(f"/v1/jobs/{job['id']}").json()
            if view["state"] == "running" and view.get("shards"):
                views.append(view)
            return view if view["state"] in ("succeeded", "failed", "cancelled", "expired") else None

        done = wait_for(running_with_shards, 240, "the sharded job to end", every_s=0.05)
    assert done["state"] == "succeeded", done["error"]
    ids = [f"{job['id']}.s{k:03d}" for k in range(3)]
    assert done["children"] == ids
    assert [s["id"] for s in done["shards"]] == ids and all(s["state"] == "succeeded" for s in done["shards"])
    assert all(s["attempts"] == 1 and s["progress"]["phase"] == "sample" for s in done["shards"])
    # while the shards ran, the job's progress was their sum
    assert views, "the job was never seen waiting for its shards"
    for v in views:
        assert v["progress"]["phase"] == "shards"
        assert v["progress"]["done"] == sum((s["progress"] or {}).get("done", 0) for s in v["shards"])
    assert any(v["progress"]["done"] > 0 for v in views)
    for sid in ids:
        shard = api.get(f"/v1/jobs/{sid}").json()
        assert shard["parent"] == job["id"] and shard["spec"]["shard"]["count"] == 3
    # one result: the job's own samples.npz (all 20 samples) and its manifest naming the shards' slices
    store = S3Store.from_settings(settings)
    manifest = store.manifest(job["id"])
    assert [s["ids"] for s in manifest["shards"]] == [[0, 3], [4, 11], [12, 19]]  # 5 batches of 4: 1, 2, 2
    assert sum(a["name"] == "samples.npz" for a in manifest["artifacts"]) == 1
    url = next(a["url"] for a in done["artifacts"] if a["name"] == "samples.npz")  # presigned, as a caller fetches it
    got = _samples(httpx.get(url, timeout=30).content)
    rows = json.loads(store.read_artifact(job["id"], "trajectory.json"))["steps"]
    # bit-identical to one unsharded job, its statistics equal to 1e-12; the embedded sharded run gives the same
    one, one_rows, _ = _embedded(_unsharded(SHARDED), tmp_path, "unsharded")
    emb, emb_rows, emb_manifest = _embedded(SHARDED, tmp_path, "sharded")
    assert got.shape == (20, 1, 8, 8)
    np.testing.assert_array_equal(got, one)
    np.testing.assert_array_equal(emb, got)
    _assert_rows_close(rows, one_rows)
    assert rows == one_rows == emb_rows  # in fact bit for bit: the batch tree merges in one fixed order
    assert manifest["summary"]["quality"] == emb_manifest["summary"]["quality"]


def test_a_shard_killed_with_sigkill_reruns_alone(api, settings, worker_process, tmp_path):
    doomed = worker_process(settings, "doomed")
    job = submit(api, LONG)
    ids = [f"{job['id']}.s{k:03d}" for k in range(3)]

    def a_shard_running():
        for sid in ids:
            r = api.get(f"/v1/jobs/{sid}")
            view = r.json() if r.status_code == 200 else None
            if view and view["state"] == "running" and (view["progress"] or {}).get("done", 0) >= 3:
                return view
        return None

    victim = wait_for(a_shard_running, 240, "a shard to run on the doomed worker", every_s=0.05)
    assert victim["worker"] == "doomed@test"
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    with inprocess_worker(settings, "rescuer"):  # its pulse finds the lapsed lease and requeues the shard
        done = wait_state(api, job["id"], timeout_s=300)
    assert done["state"] == "succeeded", done["error"]
    attempts = {s["id"]: s["attempts"] for s in done["shards"]}
    assert attempts[victim["id"]] == 2, attempts  # the killed shard ran again...
    assert all(n == 1 for sid, n in attempts.items() if sid != victim["id"]), attempts  # ...and it alone
    got = _samples(S3Store.from_settings(settings).read_artifact(job["id"], "samples.npz"))
    np.testing.assert_array_equal(got, _embedded(_unsharded(LONG), tmp_path, "twin")[0])


def test_cancel_reaches_every_shard(api, settings):
    job = submit(api, LONG)
    with inprocess_worker(settings):
        wait_progress(api, job["id"], at_least=3, timeout_s=240)  # the job waits for its shards; one runs
        r = api.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"

        def all_shards_ended():
            shards = api.get(f"/v1/jobs/{job['id']}").json()["shards"]
            return shards if all(s["state"] in ("cancelled", "succeeded", "failed") for s in shards) else None

        shards = wait_for(all_shards_ended, 60, "every shard to stop")
    assert [s["state"] for s in shards] == ["cancelled"] * 3, shards
    assert api.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"


def test_a_retry_reruns_only_the_shards_without_results(api, settings, tmp_path):
    spec = {**SHARDED, "statistics": ["mean"], "steps": 60}
    job = submit(api, spec)
    middle = f"{job['id']}.s001"
    # the middle shard is cancelled as soon as the job has fanned out: the job fails naming it
    with inprocess_worker(settings):
        wait_for(lambda: api.get(f"/v1/jobs/{middle}").status_code == 200 or None, 120, "the shards to exist",
                 every_s=0.01)
        assert api.delete(f"/v1/jobs/{middle}").status_code == 200
        failed = wait_state(api, job["id"], timeout_s=240)
        assert failed["state"] == "failed"
        assert middle in failed["error"] and "retry the job to rerun those shards alone" in failed["error"]
        before = {s["id"]: s for s in failed["shards"]}
        assert before[middle]["state"] == "cancelled"
        r = api.post(f"/v1/jobs/{job['id']}/retry")
        assert r.status_code == 202, r.text
        done = wait_state(api, job["id"], timeout_s=240)
    assert done["state"] == "succeeded", done["error"]
    after = {s["id"]: s for s in done["shards"]}
    for sid, shard in after.items():
        assert shard["state"] == "succeeded"
        # the others were not run again
        if sid != middle:
            assert shard["attempts"] == 1 and api.get(f"/v1/jobs/{sid}").json()["retries"] == 0
    assert api.get(f"/v1/jobs/{middle}").json()["retries"] == 1
    got = _samples(S3Store.from_settings(settings).read_artifact(job["id"], "samples.npz"))
    np.testing.assert_array_equal(got, _embedded(_unsharded(spec), tmp_path, "twin")[0])
