"""The worker's task against embedded Redis and a local store (no broker consumer: the task is called),
jobs submitted through the API; the pulse; the worker's Celery app."""

from __future__ import annotations

import subprocess
import sys

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 8, "seed": 1}


def _runtime(settings):
    from scalespace.worker.celery_app import make_celery
    from scalespace.worker.runtime import runtime_for

    return runtime_for(make_celery(settings, with_tasks=True))


def test_submit_run_fetch_through_the_api(api, settings):
    from scalespace.worker.tasks import run_task

    r = api.post("/v1/jobs", json={"spec": SPEC, "lane": "interactive"})
    assert r.status_code == 201 and r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
    job = r.json()
    assert job["state"] == "queued" and job["queue_position"] == 1 and job["artifacts"] is None
    assert api.get(f"/v1/jobs/{job['id']}/artifacts/samples.npz").status_code == 404  # no results yet
    rt = _runtime(settings)
    assert run_task(rt, job["id"]) == "succeeded"
    assert run_task(rt, job["id"]) == "terminal"  # a redelivery after the commit does nothing
    done = api.get(f"/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["attempts"] == 1 and done["worker"] == rt.worker_name
    arts = {a["name"]: a for a in done["artifacts"]}
    assert set(arts) >= {"samples.npz", "grid.png", "trajectory.json", "manifest.json"}
    blob = api.get(arts["samples.npz"]["url"].replace("http://testserver", "")).content
    import hashlib

    assert hashlib.sha256(blob).hexdigest() == arts["samples.npz"]["sha256"]
    assert api.get("/v1/jobs?state=succeeded&lane=interactive").json()["count"] == 1
    assert api.get("/v1/jobs?state=queued").json()["count"] == 0
    assert api.post(f"/v1/jobs/{job['id']}/retry").status_code == 409
    assert api.delete(f"/v1/jobs/{job['id']}").json()["state"] == "succeeded"  # nothing to cancel


def test_task_records_user_errors_cancellation_and_transient_store_failures(api, settings, jobstore, monkeypatch):
    from scalespace.scheduler.submit import submit_spec
    from scalespace.jobs import parse_spec
    from scalespace.worker.tasks import run_task

    rt = _runtime(settings)
    sent: list[tuple[str, str]] = []
    # a model that vanished between admission and run: a failed job with the one-line reason
    ghost = submit_spec(parse_spec({**SPEC, "model": "ghost"}), settings=settings, jobstore=jobstore,
                        enqueue=lambda j, lane: sent.append((j, lane)), lane="batch").job_id
    assert run_task(rt, ghost) == "failed"
    rec = jobstore.get(ghost)
    assert rec["state"] == "failed" and "ghost" in rec["error"] and "\n" not in rec["error"]
    # cancelled before a worker took it
    queued = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    api.delete(f"/v1/jobs/{queued}")
    assert run_task(rt, queued) == "terminal"
    # the store unreachable: back to the lane with backoff, then dead-lettered after the cap
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    broken = settings.model_copy(update={"s3_endpoint": "http://127.0.0.1:1", "s3_max_attempts": 1,
                                         "s3_bucket": "nowhere"})
    rt_broken = _runtime(broken)
    flaky = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    assert run_task(rt_broken, flaky) == "retrying"
    rec = jobstore.get(flaky)
    assert rec["state"] == "queued" and "S3 unreachable" in rec["error"] and rec["retries"] == 1
    assert run_task(rt_broken, flaky) == "retrying"
    assert run_task(rt_broken, flaky) == "dead"  # SCALESPACE_MAX_DELIVERIES=2 in these tests
    rec = jobstore.get(flaky)
    assert rec["state"] == "failed" and rec["dead_letter"] and "gave up after 2 attempts" in rec["error"]
    assert api.get("/v1/dead-letter").json()["jobs"] == [flaky]


def test_pulse_touches_heartbeat_file_and_requeues(settings, jobstore, tmp_path):
    import json
    import time

    from scalespace.worker.pulse import pulse_once

    rt = _runtime(settings)
    jobstore.submit("lost", SPEC, kind="sample", spec_hash="h", lane="batch", limit=-1)
    jobstore.begin("lost", "gone/1", "gone", lease_s=0.05, max_attempts=3)
    jobstore.r.hset(jobstore.key("job", "lost"), "heartbeat_at", time.time() - 60)
    time.sleep(0.1)
    assert pulse_once(rt) == 1  # requeued and sent to the broker
    assert jobstore.get("lost")["state"] == "queued"
    beat = json.loads((tmp_path / "heartbeat").read_text())
    assert abs(beat["time"] - time.time()) < 30 and rt.worker_name in jobstore.workers()


def test_worker_modules_do_not_import_torch():
    """CUDA must start in the process that runs a job, never at import time of the worker."""
    code = ("import sys, scalespace.worker.tasks, scalespace.worker.celery_app, scalespace.worker.pulse, scalespace.worker.lease, scalespace.scheduler.jobstore, "
            "scalespace.scheduler.queues; assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_celery_config_is_json_late_ack_solo(settings):
    from scalespace.worker.celery_app import make_celery

    conf = make_celery(settings).conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.worker_pool == "solo" and conf.broker_transport_options["visibility_timeout"] >= 3600
    assert [q.name for q in conf.task_queues] == ["scalespace.interactive", "scalespace.batch", "scalespace.nightly"]
