"""Faults with nothing lost and nothing done twice: a killed worker, a restarted Redis, an S3 outage,
a worker that starts before Redis; cancellation and deadlines."""

from __future__ import annotations

import hashlib

import io
import json
import signal
import time

import numpy as np
import pytest
from service_infra import (FaultProxy, RedisServer, download, inprocess_worker, submit, wait_for, wait_progress,
                           wait_state)

from scalespace.jobs import run_job
from scalespace.storage import LocalStore, S3Store

pytestmark = pytest.mark.integration

#: long enough to be caught running (a few hundred oracle steps over 64 images), short enough to finish
LONG = {"kind": "sample", "process": "vp", "data": "digits", "data_limit": 64, "n": 4, "steps": 150, "seed": 11}
VERY_LONG = {**LONG, "steps": 1000}
# about 75 s of work on 2 cores (512 samples over all 1,437 digits, 1,000 steps): far beyond a 3 s deadline
# however idle the machine (VERY_LONG alone can finish within 3 s)
#: how long S3 stays away in the outage test
OUTAGE_S = 60
HEAVY = {"kind": "sample", "process": "vp", "data": "digits", "n": 512, "batch_size": 512, "steps": 1000, "seed": 11}


def _samples(store, job_id):
    with np.load(io.BytesIO(store.read_artifact(job_id, "samples.npz")), allow_pickle=False) as z:
        return z["samples"]


def _embedded(spec, tmp_path, name="twin"):
    store = LocalStore(tmp_path / "embedded")
    run_job(spec, store, job_id=name)
    return _samples(store, name)


def test_sigkill_mid_job_completes_once_on_another_worker(api, settings, worker_process, tmp_path):
    doomed = worker_process(settings, "doomed")
    job = submit(api, VERY_LONG)  # long enough that the kill lands mid-job on an idle machine too
    running = wait_progress(api, job["id"], at_least=3, timeout_s=180)
    assert running["worker"] == "doomed@test"
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    with inprocess_worker(settings, "rescuer"):  # its pulse finds the lapsed lease and requeues the job
        done = wait_state(api, job["id"], timeout_s=180)
    assert done["state"] == "succeeded", done["error"]
    assert done["worker"] == "rescuer@test" and done["attempts"] == 2 and done["redeliveries"] == 1
    store = S3Store.from_settings(settings)
    np.testing.assert_array_equal(_samples(store, job["id"]), _embedded(VERY_LONG, tmp_path))
    metrics = api.get("/metrics").text
    assert 'scalespace_jobs_finished_total{kind="sample",state="succeeded"} 1.0' in metrics
    assert "scalespace_job_redeliveries_total 1.0" in metrics


def test_frozen_worker_past_its_lease_leaves_the_new_owners_results_intact(api, settings, worker_process, tmp_path):
    """SIGSTOP a worker past its lease, let another worker finish the job, then SIGCONT: the woken worker writes,
    deletes and publishes nothing; one manifest, every sha256 right, downloads work."""
    frozen = worker_process(settings, "frozen")
    job = submit(api, VERY_LONG)
    running = wait_progress(api, job["id"], at_least=3, timeout_s=180)
    assert running["worker"] == "frozen@test"
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        with inprocess_worker(settings, "rescuer"):  # reaps the lapsed lease and runs the job as attempt 2
            done = wait_state(api, job["id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            store = S3Store.from_settings(settings)
            manifest = store.manifest(job["id"])
            frozen.proc.send_signal(signal.SIGCONT)
            wait_for(lambda: "lease lost" in frozen.text() or "not committed" in frozen.text(), 120,
                     "the woken worker to find it lost the lease")
            # only the committed attempt is left once the janitor has run (any worker's pulse)
            committed = {a["path"] for a in manifest["artifacts"]} | {"manifest.json"}
            wait_for(lambda: set(store.list("jobs", job["id"])) == committed, 60, "only the committed attempt left")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    after = api.get(f"/v1/jobs/{job['id']}").json()
    assert after["state"] == "succeeded" and after["worker"] == "rescuer@test" and after["attempts"] == 2
    assert manifest["attempt"] == 2 and store.manifest(job["id"]) == manifest  # one manifest, the new owner's
    for a in manifest["artifacts"]:
        blob = store.get("jobs", job["id"], a["path"])
        assert hashlib.sha256(blob).hexdigest() == a["sha256"] and len(blob) == a["bytes"]
    for art in after["artifacts"]:  # the downloads a user gets: presigned, the manifest through the API
        r = download(api, art["url"])
        assert r.status_code == 200, (art["name"], r.status_code)
        assert art["sha256"] is None or hashlib.sha256(r.content).hexdigest() == art["sha256"]
    np.testing.assert_array_equal(_samples(store, job["id"]), _embedded(VERY_LONG, tmp_path))


def test_sigterm_requeues_the_running_job_and_it_finishes_elsewhere(api, settings, worker_process, tmp_path):
    leaving = worker_process(settings, "leaving")  # SCALESPACE_WORKER_SHUTDOWN_TIMEOUT_S=2
    job = submit(api, HEAVY)  # must outlast the 2 s shutdown grace
    wait_progress(api, job["id"], at_least=2, timeout_s=180)
    assert leaving.terminate(timeout_s=60) == 0
    back = api.get(f"/v1/jobs/{job['id']}").json()
    assert back["state"] == "queued" and "shut down" in back["error"] and back["attempts"] == 0
    assert not (tmp_path / "heartbeat-leaving").exists()  # a stopped worker leaves no liveness file
    with inprocess_worker(settings):
        # it runs again from the start (once the other worker has taken it: a cancel before that would find it
        # still queued); no need to wait out 1000 steps
        wait_for(lambda: api.get(f"/v1/jobs/{job['id']}").json()["attempts"] == 1, 180,
                 "the second worker to start the job", every_s=0.2)
        api.delete(f"/v1/jobs/{job['id']}")
        end = wait_state(api, job["id"], timeout_s=180)
    assert end["state"] == "cancelled" and end["attempts"] == 1


def test_redis_restart_with_jobs_queued_and_running(make_settings, tmp_path):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN

    redis = RedisServer(tmp_path / "own-redis").start()
    try:
        settings = make_settings(redis_url=f"{redis.url}/0")
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                inprocess_worker(settings):
            jobs = [submit(api, {**LONG, "seed": s}) for s in (1, 2, 3)]
            wait_progress(api, jobs[0]["id"], at_least=3, timeout_s=180)
            assert api.get(f"/v1/jobs/{jobs[1]['id']}").json()["state"] == "queued"
            redis.restart()
            done = [wait_state(api, j["id"], timeout_s=300) for j in jobs]
        assert [d["state"] for d in done] == ["succeeded"] * 3, [d["error"] for d in done]
        assert [d["attempts"] for d in done] == [1, 1, 1]
    finally:
        redis.stop()


def test_redis_outage_longer_than_the_lease_abandons_no_running_job(make_settings, tmp_path):
    """Redis away for 60 s with the default lease (60 s, heartbeat 10 s): every lease has lapsed when it comes back,
    yet the running job is neither reaped nor rerun: the worker renews its lease before anything is reaped."""
    from fastapi.testclient import TestClient

    from scalespace.config import Settings
    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN

    defaults = Settings.model_fields
    redis = RedisServer(tmp_path / "outage-redis").start()
    try:
        settings = make_settings(redis_url=f"{redis.url}/0", lease_s=defaults["lease_s"].default,
                                 heartbeat_s=defaults["heartbeat_s"].default)
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                inprocess_worker(settings):
            job = submit(api, HEAVY)
            wait_progress(api, job["id"], at_least=3, timeout_s=180)
            redis.stop()
            time.sleep(60)
            redis.start()
            done = wait_state(api, job["id"], timeout_s=600)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempts"] == 1 and done["redeliveries"] == 0, done
    finally:
        redis.stop()


def test_s3_outage_is_waited_out_without_using_an_attempt(make_settings, weed, tmp_path):
    """S3 away for OUTAGE_S across a job's writes: the job backs off and retries, succeeds once S3 is back,
    leaves nothing partial, and its attempt count is unchanged (an outage is not the job's failure)."""
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN

    proxy = FaultProxy(weed.s3_port)
    settings = make_settings(s3_endpoint=proxy.endpoint, retry_backoff_s=1, retry_backoff_max_s=8)
    spec = {**LONG, "steps": 10}
    try:
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                inprocess_worker(settings):
            proxy.down()
            down_at = time.monotonic()
            job = submit(api, spec)

            def retried():
                j = api.get(f"/v1/jobs/{job['id']}").json()
                return j if j["retries"] >= 2 else None

            failing = wait_for(retried, 60, "two waits for S3")
            assert "S3" in failing["error"] and failing["state"] in ("queued", "running")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            proxy.up()
            done = wait_state(api, job["id"], timeout_s=180)
            assert done["state"] == "succeeded", done["error"]
            store = S3Store.from_settings(settings)
            manifest = store.manifest(job["id"])
            committed = {a["path"] for a in manifest["artifacts"]} | {"manifest.json"}
            # nothing partial left: the janitor removes the attempts that met the outage
            wait_for(lambda: set(store.list("jobs", job["id"])) == committed, 60, "only the committed attempt left")
        assert done["retries"] >= 2 and done["attempts"] == 1, (done["retries"], done["attempts"])
        for a in manifest["artifacts"]:
            assert hashlib.sha256(store.get("jobs", job["id"], a["path"])).hexdigest() == a["sha256"]
        np.testing.assert_array_equal(_samples(store, job["id"]), _embedded(spec, tmp_path))
    finally:
        proxy.close()


def test_s3_outage_at_commit_fails_after_the_outage_tolerance_and_leaves_no_results(make_settings, weed):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN

    proxy = FaultProxy(weed.s3_port)
    settings = make_settings(s3_endpoint=proxy.endpoint, outage_tolerance_s=8, retry_backoff_s=1, retry_backoff_max_s=2)
    try:
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                inprocess_worker(settings):
            proxy.fail_on(b"trajectory.json")  # S3 goes away at the attempt's last upload, before the commit
            job = submit(api, {**LONG, "steps": 10})
            done = wait_state(api, job["id"], timeout_s=180)
            assert proxy.tripped.is_set()
            assert done["state"] == "failed" and not done["dead_letter"] and done["attempts"] == 1
            assert "SCALESPACE_OUTAGE_TOLERANCE_S=8" in done["error"] and "S3" in done["error"], done["error"]
            proxy.up()
            assert done["artifacts"] is None
            assert api.get(f"/v1/jobs/{job['id']}/artifacts/samples.npz").status_code == 404
        names = S3Store.from_settings(make_settings()).list("jobs", job["id"])
        assert "manifest.json" not in names  # what is left there is not a result
        assert S3Store.from_settings(make_settings()).manifest(job["id"]) is None
    finally:
        proxy.close()


def test_s3_outage_just_after_the_commit_keeps_the_results_and_the_janitor_publishes_the_manifest(make_settings,
                                                                                                  weed):
    """S3 goes away at the publish, just after the commit: the job has succeeded (its artifacts landed before
    it); the API serves its manifest from the job store meanwhile, and once S3 is back the janitor publishes
    those bytes as the job's manifest.json."""
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN

    proxy = FaultProxy(weed.s3_port)
    settings = make_settings(s3_endpoint=proxy.endpoint, outage_tolerance_s=3, retry_backoff_s=1, retry_backoff_max_s=1)
    try:
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api, \
                inprocess_worker(settings):
            proxy.fail_on(b"/manifest.json")  # the publish: the first request that names a manifest
            job = submit(api, {**LONG, "steps": 10})
            done = wait_state(api, job["id"], timeout_s=180)
            assert proxy.tripped.is_set()
            assert done["state"] == "succeeded" and done["attempts"] == 1, done["error"]
            served = download(api, f"http://testserver/v1/jobs/{job['id']}/artifacts/manifest.json")
            assert served.status_code == 200 and json.loads(served.content)["job_id"] == job["id"]
            store = S3Store.from_settings(make_settings())  # S3 itself, not through the proxy
            assert store.manifest(job["id"]) is None  # not published while S3 is away
            proxy.up()
            wait_for(lambda: store.manifest(job["id"]) is not None, 90, "the janitor to publish the manifest")
        assert store.get("jobs", job["id"], "manifest.json") == served.content  # the bytes the commit kept
        manifest = json.loads(served.content)
        for a in manifest["artifacts"]:
            assert hashlib.sha256(store.get("jobs", job["id"], a["path"])).hexdigest() == a["sha256"]
    finally:
        proxy.close()


def test_worker_started_before_redis(make_settings, worker_process, tmp_path):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app
    from service_infra import TOKEN, free_port

    redis = RedisServer(tmp_path / "late-redis", port=free_port())
    settings = make_settings(redis_url=f"{redis.url}/0", startup_wait_s=120)
    early = worker_process(settings, "early")
    try:
        wait_for(lambda: "waiting up to" in early.text(), 60, "the worker to wait for Redis")
        assert early.proc.poll() is None
        redis.start()
        with TestClient(create_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            job = submit(api, {**LONG, "steps": 10})
            done = wait_state(api, job["id"], timeout_s=180)
        assert done["state"] == "succeeded" and done["worker"] == "early@test"
    finally:
        early.kill()
        redis.stop()


def test_cancel_and_deadline_of_queued_jobs(api, settings):
    queued = submit(api, LONG)
    cancelled = api.delete(f"/v1/jobs/{queued['id']}").json()
    assert cancelled["state"] == "cancelled" and cancelled["attempts"] == 0
    late = submit(api, LONG, deadline_s=1)
    expired = wait_state(api, late["id"], timeout_s=30)
    assert expired["state"] == "expired" and "before the job could start" in expired["error"]
    marker = submit(api, {**LONG, "steps": 5})
    with inprocess_worker(settings):  # the cancelled and expired jobs' messages arrive first and are dropped
        assert wait_state(api, marker["id"])["state"] == "succeeded"
    for job_id in (queued["id"], late["id"]):
        assert api.get(f"/v1/jobs/{job_id}").json()["attempts"] == 0
    assert api.post(f"/v1/jobs/{queued['id']}/retry").status_code == 202


def test_cancel_running_job_stops_within_one_step_and_deadline_expires(api, settings):
    with inprocess_worker(settings):
        job = submit(api, VERY_LONG)
        wait_progress(api, job["id"], at_least=3, timeout_s=180)
        asked = time.monotonic()
        api.delete(f"/v1/jobs/{job['id']}")
        done = wait_state(api, job["id"], timeout_s=60)
        # the worker reads the flag at most every 0.05 s; it stopped long before its 1,000 steps
        assert done["state"] == "cancelled" and time.monotonic() - asked < 10
        assert done["cancel_step"] is not None and done["cancel_step"] <= done["stopped_step"] < 1000
        assert done["artifacts"] is None
        t0 = time.monotonic()
        timed = submit(api, HEAVY, deadline_s=3)
        end = wait_state(api, timed["id"], timeout_s=120)
        assert end["state"] == "expired" and "deadline passed at step" in end["error"]
        assert end["stopped_step"] < 1000 and time.monotonic() - t0 < 60
        store = S3Store.from_settings(settings)
        # what the cancelled attempt wrote goes with the janitor (the worker's pulse, after SCALESPACE_LEASE_S)
        wait_for(lambda: store.list("jobs", job["id"]) == [], 60, "the janitor to tidy the cancelled job")
    assert store.manifest(job["id"]) is None
