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
    assert done["progress"]["done"] == done["progress"]["total"]  # the last step's progress, carried by the commit
    arts = {a["name"]: a for a in done["artifacts"]}
    assert set(arts) >= {"samples.npz", "grid.png", "trajectory.json", "manifest.json"}
    blob = api.get(arts["samples.npz"]["url"].replace("http://testserver", "")).content
    import hashlib

    assert hashlib.sha256(blob).hexdigest() == arts["samples.npz"]["sha256"]
    png = arts["grid.png"]["url"].replace("http://testserver", "")
    head = api.head(png)
    assert head.status_code == 200 and head.headers["content-type"] == "image/png" and head.content == b""
    assert int(head.headers["content-length"]) == arts["grid.png"]["bytes"]
    got = api.get(png)
    assert got.headers["content-type"] == "image/png" and got.content[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = api.get(arts["manifest.json"]["url"].replace("http://testserver", ""))
    assert manifest.headers["content-type"] == "application/json" and manifest.json()["attempt"] == 1
    assert api.head(f"/v1/jobs/{job['id']}/artifacts/nothing.png").status_code == 404
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
    assert rec.state == "failed" and "ghost" in rec.error and "\n" not in rec.error
    # cancelled before a worker took it
    queued = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    api.delete(f"/v1/jobs/{queued}")
    assert run_task(rt, queued) == "terminal"
    # the store unreachable: not the job's failure: back to the lane with backoff, no attempt used,
    # as often as it takes, until the outage has lasted SCALESPACE_OUTAGE_TOLERANCE_S
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    broken = settings.model_copy(update={"s3_endpoint": "http://127.0.0.1:1", "s3_max_attempts": 1,
                                         "s3_bucket": "nowhere", "outage_tolerance_s": 600})
    rt_broken = _runtime(broken)
    flaky = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    for k in range(1, 4):  # more than SCALESPACE_MAX_DELIVERIES=2 of these tests
        assert run_task(rt_broken, flaky) == "retrying"
        rec = jobstore.get(flaky)
        assert rec.state == "queued" and "S3 unreachable" in rec.error and "waiting out an outage" in rec.error
        assert rec.retries == k and rec.attempts == 0 and rec.outage_since > 0
    key = jobstore.key("job", flaky)
    jobstore.r.hset(key, "outage_since", rec.outage_since - 601)  # the outage has now lasted the tolerance
    assert run_task(rt_broken, flaky) == "failed"
    rec = jobstore.get(flaky)
    assert rec.state == "failed" and not rec.dead_letter and rec.attempts == 1
    assert "SCALESPACE_OUTAGE_TOLERANCE_S=600" in rec.error and "S3 unreachable" in rec.error
    assert jobstore.get(flaky).outage_since is None  # cleared when the job ended
    # the delivery cap counts the job's own attempts (workers lost mid-job): dead-lettered after it
    lost = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    jobstore.r.hset(jobstore.key("job", lost), "attempts", 2)
    assert run_task(rt, lost) == "dead"
    rec = jobstore.get(lost)
    assert rec.state == "failed" and rec.dead_letter and "gave up after 2 attempts" in rec.error
    assert api.get("/v1/dead-letter").json()["jobs"] == [lost]


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
    assert jobstore.get("lost").state == "queued"
    beat = json.loads((tmp_path / "heartbeat").read_text())
    assert abs(beat["time"] - time.time()) < 30 and rt.worker_name in jobstore.workers()


def _lapsed_job(jobstore, job_id: str, owner: str) -> None:
    """A running job whose lease and heartbeat have lapsed, as after a Redis outage longer than the lease."""
    import time

    jobstore.submit(job_id, SPEC, kind="sample", spec_hash="h", lane="batch", limit=-1)
    jobstore.begin(job_id, owner, "w", lease_s=0.05, max_attempts=3)
    jobstore.r.hset(jobstore.key("job", job_id), "heartbeat_at", time.time() - 60)
    time.sleep(0.1)


def test_after_an_outage_a_worker_renews_its_leases_before_it_reaps(settings, jobstore):
    """The lease clock: a lapsed lease of a live worker is renewed, not reaped, when Redis comes back."""
    from scalespace.worker.lease import Lease
    from scalespace.worker.pulse import Pulse

    rt = _runtime(settings)
    now = [1000.0]
    pulse = Pulse(rt, clock=lambda: now[0])
    now[0] += settings.lease_s  # a worker that has been up for a lease period reaps
    _lapsed_job(jobstore, "mine", "me/1")
    with Lease(jobstore, "mine", "me/1", settings.lease_s, 3600, registry=rt.leases):
        pulse.failed()  # Redis was away
        assert pulse.beat() == 0  # back: our lease renewed first, and no reaping for a lease period
        assert jobstore.get("mine").state == "running"
        now[0] += settings.lease_s - 0.5
        assert pulse.beat() == 0 and jobstore.get("mine").state == "running"

    # a dead worker's job (no live lease renews it) is reaped once the lease period has passed
    _lapsed_job(jobstore, "theirs", "gone/1")
    assert pulse.beat() == 0  # still inside the period
    now[0] += 1.0
    assert pulse.beat() == 1 and jobstore.get("theirs").state == "queued"


def test_without_the_lease_clock_the_live_job_would_be_reaped(settings, jobstore):
    """The counterexample the lease clock exists for: reaping straight after the outage takes a live job."""
    from scalespace.worker.pulse import pulse_once

    rt = _runtime(settings)
    _lapsed_job(jobstore, "mine", "me/1")
    assert pulse_once(rt, reap=True) == 1 and jobstore.get("mine").state == "queued"


def test_a_job_whose_message_was_lost_is_sent_again_by_the_pulse(settings, jobstore):
    """No ack emulation: a worker that dies after taking a message and before starting the job leaves the job
    queued with no message anywhere. The pulse sends it again once it has been queued for
    SCALESPACE_VISIBILITY_TIMEOUT_S, once per period, and the job then runs."""
    import json
    import time

    from scalespace.jobs.specs import parse_spec
    from scalespace.scheduler.submit import submit_spec
    from scalespace.worker.pulse import pulse_once
    from scalespace.worker.tasks import run_task

    rt = _runtime(settings)
    job_id = submit_spec(parse_spec(SPEC), settings=settings, jobstore=jobstore, enqueue=rt.enqueuer,
                         lane="batch").job_id
    queue, r = "scalespace.batch", jobstore.r
    with rt.app.connection_for_read() as conn:  # a worker takes the message as the worker's broker hands it out
        taken = conn.SimpleQueue(queue, no_ack=False).get(timeout=5)
        assert taken.headers["id"] and r.llen(queue) == 0
        assert not [k for k in r.keys("*") if "unacked" in k]  # no copy kept for the broker to restore
        taken.ack()  # ... and dies before `begin` (a clean close would put an unacknowledged message back)
    assert pulse_once(rt) == 0 and r.llen(queue) == 0  # not queued for long yet: nothing sent
    r.zadd(jobstore.key("lane", "batch"), {job_id: time.time() - settings.visibility_timeout_s - 1})
    assert pulse_once(rt) == 1 and r.llen(queue) == 1
    assert json.loads(r.lindex(queue, 0))["headers"]["argsrepr"] == repr([job_id])
    assert pulse_once(rt) == 0 and r.llen(queue) == 1  # once per period
    assert jobstore.get(job_id).redeliveries == 1 and jobstore.snapshot(["batch"])["stats"]["resent"] == "1"
    r.rpop(queue)
    assert run_task(rt, job_id) == "succeeded"
    r.zadd(jobstore.key("lane", "batch"), {job_id: 0.0})  # a stale entry of a job that ran is not sent
    r.hset(jobstore.key("job", job_id), "resent_at", 0)
    assert pulse_once(rt) == 0 and r.llen(queue) == 0


def test_the_pulse_takes_a_job_its_worker_published_off_the_janitors_list(settings, jobstore, monkeypatch):
    """A job of one attempt whose manifest.json its worker published leaves nothing to tidy: the worker's pulse
    takes it off the janitor's list (no HEAD for it, no read) and drops the manifest its commit kept. One whose
    publish failed stays, and the janitor publishes the kept bytes, then drops them."""
    import scalespace.worker.tasks as tasks
    from scalespace.scheduler.janitor import tidy
    from scalespace.storage import StoreUnavailable
    from scalespace.worker.pulse import pulse_once

    rt = _runtime(settings.model_copy(update={"outage_tolerance_s": 0.0}))
    for job_id in ("pub", "lost"):
        jobstore.submit(job_id, SPEC, kind="sample", spec_hash="h" + job_id, lane="batch", limit=-1)
    assert tasks.run_task(rt, "pub") == "succeeded"

    def s3_away(*args, **kwargs):
        raise StoreUnavailable("S3 away")

    monkeypatch.setattr(tasks, "publish", s3_away)
    assert tasks.run_task(rt, "lost") == "succeeded"
    assert list(rt.published) == ["pub"]
    assert set(jobstore.r.zrange(jobstore.key("janitor"), 0, -1)) == {"pub", "lost"}
    assert jobstore.manifest("pub") == rt.store.get("jobs", "pub", "manifest.json")
    kept = jobstore.manifest("lost")
    assert kept is not None and jobstore.get("lost").manifest_held
    pulse_once(rt, reap=False)
    assert list(rt.published) == [] and jobstore.r.zrange(jobstore.key("janitor"), 0, -1) == ["lost"]
    assert jobstore.manifest("pub") is None and jobstore.manifest("lost") == kept  # published: dropped
    assert not rt.store.exists("jobs", "lost", "manifest.json")
    assert tidy(jobstore, rt.store, grace_s=0.0) == 1  # the janitor publishes what the worker could not
    assert rt.store.exists("jobs", "lost", "manifest.json") and rt.store.exists("jobs", "pub", "manifest.json")
    assert rt.store.get("jobs", "lost", "manifest.json") == kept and jobstore.manifest("lost") is None


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
    assert conf.broker_transport_options["ack_emulation"] is False  # the job store is the backstop (pulse)
    assert [q.name for q in conf.task_queues] == ["scalespace.interactive", "scalespace.batch", "scalespace.nightly"]


def test_the_nightly_task_submits_its_sweep_with_its_message_in_one_step(settings, tmp_path, monkeypatch):
    """The beat's task queues tonight's run of a named sweep through the worker's Enqueuer: the record and its
    broker message land together, in the job store's database (once per UTC day: a second beat adds nothing)."""
    import json

    from scalespace.scheduler.jobstore import JobStore
    from scalespace.scheduler.queues import Enqueuer, TASK_NIGHTLY

    sweeps = tmp_path / "sweeps.yaml"
    sweeps.write_text("nightly:\n  processes: [vp]\n  data: [digits]\n  template: {kind: sample, n: 4, steps: 4}\n")
    settings = settings.model_copy(update={"sweeps_file": str(sweeps)})
    rt = _runtime(settings)
    sent = []
    monkeypatch.setattr(Enqueuer, "__call__", lambda self, job_id, lane: sent.append(job_id))  # no second path
    js = JobStore.from_settings(settings)
    js.r.delete("scalespace.nightly")
    job_id = rt.app.tasks[TASK_NIGHTLY].run("nightly")
    rec = js.get(job_id)
    assert rec.state == "queued" and rec.kind == "sweep" and rec.lane == "nightly" and sent == []
    queued = [json.loads(m)["headers"] for m in js.r.lrange("scalespace.nightly", 0, -1)]
    assert [(h["task"], h["argsrepr"]) for h in queued] == [("scalespace.run", repr([job_id]))]
    assert rt.app.tasks[TASK_NIGHTLY].run("nightly") == job_id and js.r.llen("scalespace.nightly") == 1


def test_the_worker_settles_its_heap_once_after_the_first_job_it_ran(api, settings, monkeypatch):
    """gc.freeze once the first job has filled the caches: not for a message that ran nothing, not again."""
    import gc

    from scalespace.worker import runtime
    from scalespace.worker.tasks import run_task

    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(runtime, "_settled", False)  # as in a fresh worker process
    rt = _runtime(settings)
    assert run_task(rt, "not a job id!") == "invalid" and run_task(rt, "no-such-job") == "missing"
    assert frozen == []  # nothing ran: torch and the caches are not in memory yet
    first, second = (api.post("/v1/jobs", json={"spec": dict(SPEC, seed=k)}).json()["id"] for k in (11, 12))
    assert run_task(rt, first) == "succeeded" and frozen == [True]
    assert run_task(rt, second) == "succeeded" and frozen == [True]  # once a process
