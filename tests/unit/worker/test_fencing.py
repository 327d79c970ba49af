"""Fenced attempts: a worker that lost its lease writes, deletes and publishes nothing of the new owner's.

Two workers' tasks run against embedded Redis and one local store. Worker A is frozen inside a write (the
store blocks it), its lease is taken from it, worker B runs the job to the end, then A is let go.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from scalespace.scheduler.janitor import tidy, tidy_job
from scalespace.storage import LocalStore, StoreUnavailable

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4, "steps": 6, "seed": 3}


class FreezingStore(LocalStore):
    """A local store that blocks the first write of each name in `freeze_on` until thawed (a SIGSTOP inside it)."""

    def __init__(self, root: Any, *freeze_on: str):
        super().__init__(root)
        self.frozen = {n: threading.Event() for n in freeze_on}
        self.thaw = {n: threading.Event() for n in freeze_on}

    def put(self, namespace: str, ident: str, name: str, data: bytes) -> Any:
        if name in self.frozen and not self.frozen[name].is_set():
            self.frozen[name].set()
            assert self.thaw[name].wait(120)
        return super().put(namespace, ident, name, data)


def _runtime(settings: Any, name: str, store: Any) -> Any:
    from scalespace.worker.celery_app import make_celery
    from scalespace.worker.runtime import runtime_for

    rt = runtime_for(make_celery(settings, with_tasks=True))
    rt.worker_name, rt._store = name, store
    return rt


def _check_results(store: LocalStore, job_id: str, attempt: int, js: Any) -> dict[str, Any]:
    manifest = store.manifest(job_id)
    assert manifest is not None and manifest["attempt"] == attempt
    for a in manifest["artifacts"]:
        assert a["path"] == f"attempt-{attempt}/{a['name']}"
        data = store.get("jobs", job_id, a["path"])
        assert hashlib.sha256(data).hexdigest() == a["sha256"] and len(data) == a["bytes"]
    # published from the bytes the commit kept; the attempt's folder holds its artifacts alone
    assert store.get("jobs", job_id, "manifest.json") == js.manifest(job_id)
    assert f"attempt-{attempt}/manifest.json" not in store.list("jobs", job_id)
    return manifest


@pytest.mark.parametrize("freeze_on, b_busy", [
    ("attempt-1/samples.npz", False),  # A wakes before an artifact: its next write is refused
    ("attempt-1/trajectory.json", False),  # A wakes in its last write, after B committed: its commit is refused
    ("attempt-1/trajectory.json", True),  # A wakes while B is still running: its commit is refused all the same
])
def test_a_frozen_worker_never_touches_the_new_owners_results(api, settings, freeze_on, b_busy, monkeypatch):
    import time

    import scalespace.worker.lease as lease_mod
    from scalespace.worker.tasks import run_task

    frozen_for = [0.0]  # the lease clock (monotonic) runs on while a process is frozen
    monkeypatch.setattr(lease_mod, "_now", lambda: time.monotonic() + frozen_for[0])

    settings = settings.model_copy(update={"heartbeat_s": 60.0, "lease_s": 120.0})  # no beat during the test
    job_id = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    b_point = "attempt-2/samples.npz"
    store = FreezingStore(settings.results_dir, freeze_on, *([b_point] if b_busy else []))
    a, b = _runtime(settings, "A", store), _runtime(settings, "B", store)
    js = a.jobstore
    result: dict[str, str] = {}
    stale = threading.Thread(target=lambda: result.update(a=run_task(a, job_id)), daemon=True)
    stale.start()
    assert store.frozen[freeze_on].wait(120)
    frozen_for[0] = settings.lease_s  # A is frozen for longer than its lease ...
    js.r.delete(js.key("lease", job_id))  # ... which lapses ...
    assert js.reap(0) == [(job_id, "batch")]  # ... and the reaper gives the job to the lane again
    owner = threading.Thread(target=lambda: result.update(b=run_task(b, job_id)), daemon=True)
    owner.start()
    if b_busy:
        assert store.frozen[b_point].wait(120)
    else:
        owner.join(120)
    before = {n: store.get("jobs", job_id, n) for n in store.list("jobs", job_id) if n.startswith("attempt-2/")}
    store.thaw[freeze_on].set()  # A wakes up
    stale.join(120)
    assert result["a"] == "lease-lost"
    assert {n: store.get("jobs", job_id, n) for n in before} == before  # nothing of B's overwritten or deleted
    if b_busy:
        assert js.get(job_id).state == "running" and store.manifest(job_id) is None  # A published nothing
        store.thaw[b_point].set()
        owner.join(120)
    assert result["b"] == "succeeded"
    rec = js.get(job_id)
    assert rec.state == "succeeded" and rec.worker == "B" and rec.committed_attempt == 2 and rec.fence == 2
    manifest = _check_results(store, job_id, 2, js)
    view = api.get(f"/v1/jobs/{job_id}").json()
    for art in view["artifacts"]:
        blob = api.get(art["url"].replace("http://testserver", "")).content
        assert art["sha256"] is None or hashlib.sha256(blob).hexdigest() == art["sha256"]
    # A's leftovers stay until the janitor, which keeps exactly the committed attempt
    assert any(n.startswith("attempt-1/") for n in store.list("jobs", job_id))
    assert tidy(js, store, grace_s=0) == 1
    assert sorted(store.list("jobs", job_id)) == sorted(
        [a["path"] for a in manifest["artifacts"]] + ["manifest.json"])


def test_stale_transitions_are_refused_and_the_token_only_grows(jobstore):
    jobstore.submit("f", SPEC, kind="sample", spec_hash="h", lane="batch", limit=-1)
    first = jobstore.begin("f", "w/1", "w", lease_s=30, max_attempts=5)
    jobstore.r.delete(jobstore.key("lease", "f"))
    assert jobstore.reap(0) == [("f", "batch")]
    second = jobstore.begin("f", "w/2", "w", lease_s=30, max_attempts=5)
    assert (first.fence, second.fence) == (1, 2)
    assert jobstore.step("f", "w/1", None) == "lease-lost"
    assert jobstore.commit("f", "w/1", 1, [], {}, 1.0).action == "not-ours"
    assert jobstore.commit("f", "w/2", 1, [], {}, 1.0).action == "not-ours"  # the owner, but an old token
    assert jobstore.finish("f", "w/1", "failed", "stale").action == "not-ours"
    assert jobstore.requeue("f", "w/1", "stale", outage=True) == 0
    assert jobstore.get("f").state == "running"
    # the lease lapsed without a reaper: still ours (no one else began), so the owner may commit
    jobstore.r.delete(jobstore.key("lease", "f"))
    assert jobstore.finish("f", "w/2", "failed", "boom").action == "failed"
    assert jobstore.retry("f", limit=10, deadline_s=None).action == "queued"
    third = jobstore.begin("f", "w/3", "w", lease_s=30, max_attempts=5)
    assert third.attempt == 1 and third.fence == 3  # a retry resets the attempts, never the token
    assert jobstore.commit("f", "w/3", 3, [], {}, 1.0).action == "succeeded"


def _ended(jobstore, store, job_id, kind, state, attempts, committed=0):
    """A job that ended after `attempts` deliveries, each of which wrote a file in its folder."""
    spec = {**SPEC, "kind": kind}
    jobstore.submit(job_id, spec, kind=kind, spec_hash="h", lane="batch", limit=-1)
    for n in range(1, attempts + 1):
        got = jobstore.begin(job_id, f"w/{n}", "w", lease_s=30, max_attempts=10)
        store.put("jobs", job_id, f"attempt-{n}/part.bin", b"x" * n)
        if n < attempts:
            jobstore.requeue(job_id, f"w/{n}", "again", refund=True)
    if state == "succeeded":
        store.put_json("jobs", job_id, f"attempt-{committed}/manifest.json", {"attempt": committed})
        assert jobstore.commit(job_id, f"w/{attempts}", got.fence, [], {}, 1.0, attempt=committed).action == "succeeded"
    else:
        jobstore.finish(job_id, f"w/{attempts}", state, "it ended")


def test_janitor_tidies_each_ending_once(jobstore, tmp_path):
    store = LocalStore(tmp_path / "s")
    _ended(jobstore, store, "ok", "sample", "succeeded", 3, committed=3)
    _ended(jobstore, store, "bad", "sample", "failed", 2)
    _ended(jobstore, store, "train", "train", "failed", 2)
    assert tidy(jobstore, store, grace_s=3600) == 0  # within the grace period: untouched
    assert tidy(jobstore, store, grace_s=0) == 3
    assert store.list("jobs", "ok") == ["attempt-3/manifest.json", "attempt-3/part.bin", "manifest.json"]
    assert store.get("jobs", "ok", "manifest.json") == store.get("jobs", "ok", "attempt-3/manifest.json")  # published
    assert store.list("jobs", "bad") == []
    assert store.list("jobs", "train") == ["attempt-1/part.bin", "attempt-2/part.bin"]  # a retry resumes from them
    assert jobstore.janitor_due(0) == []  # each once


def test_janitor_leaves_live_jobs_and_retries_after_an_outage(jobstore, tmp_path):
    class Down(LocalStore):
        def delete(self, *args: Any, **kwargs: Any) -> None:
            raise StoreUnavailable("S3 unreachable")

    store = LocalStore(tmp_path / "s")
    _ended(jobstore, store, "gone", "sample", "failed", 1)
    assert tidy(jobstore, Down(tmp_path / "s"), grace_s=0) == 0
    assert [i for i, _ in jobstore.janitor_due(0)] == ["gone"]  # kept for the next round
    jobstore.retry("gone", limit=10, deadline_s=None)
    assert tidy_job(jobstore, store, "gone") == "live"  # retried since: its new attempt is not touched
    assert store.list("jobs", "gone") == ["attempt-1/part.bin"]


def test_read_latest_prefers_this_attempt_then_the_newest_earlier_one(tmp_path):
    from scalespace.jobs.context import JobContext

    store = LocalStore(tmp_path / "s")
    store.put("jobs", "t", "attempt-1/ck", b"one")
    store.put("jobs", "t", "attempt-2/ck", b"two")
    assert JobContext(job_id="t", store=store, attempt=4).read_latest("ck") == b"two"
    store.put("jobs", "t", "attempt-4/ck", b"four")
    assert JobContext(job_id="t", store=store, attempt=4).read_latest("ck") == b"four"
    assert JobContext(job_id="t", store=store, attempt=4).read_latest("other") is None
    assert JobContext(job_id="t", store=store).read_latest("ck") is None  # embedded: the job's own folder only


def test_many_workers_janitors_take_different_jobs_and_a_round_keeps_to_its_budget(jobstore, tmp_path):
    import random

    store = LocalStore(tmp_path / "s")
    for k in range(12):
        _ended(jobstore, store, f"j{k:02d}", "sample", "failed", 1)
    oldest = [i for i, _ in jobstore.janitor_due(0, 3)]
    assert oldest == ["j00", "j01", "j02"]  # without a random source: the oldest, as before
    picks = {tuple(i for i, _ in jobstore.janitor_due(0, 3, random.Random(seed))) for seed in range(8)}
    assert len(picks) > 1 and all(len(p) == 3 for p in picks)  # workers' rounds spread over the list
    # a round stops once its budget is spent (after one job at least); the rest wait for the next round
    assert tidy(jobstore, store, grace_s=0, limit=50, budget_s=0.0) == 1
    assert len(jobstore.janitor_due(0)) == 11
    assert tidy(jobstore, store, grace_s=0, limit=50, budget_s=60.0, rng=random.Random(0)) == 11
    assert jobstore.janitor_due(0) == []


def test_a_start_lost_in_a_failover_is_sent_again_at_once(api, settings, monkeypatch):
    """A failover keeps the message's removal from its queue but loses the start (BEGIN's writes): the record
    says queued again and no delivery holds it, so no message exists for a job nobody runs. The delivery that
    finds its lease lost sends the message again at once, writes nothing else, and the next one runs the job."""
    import base64
    import json
    import time

    import scalespace.worker.lease as lease_mod
    from scalespace.scheduler.queues import queue_name
    from scalespace.worker.tasks import run_task

    frozen_for = [0.0]
    monkeypatch.setattr(lease_mod, "_now", lambda: time.monotonic() + frozen_for[0])
    settings = settings.model_copy(update={"heartbeat_s": 60.0, "lease_s": 120.0})  # no beat during the test
    job_id = api.post("/v1/jobs", json={"spec": SPEC}).json()["id"]
    store = FreezingStore(settings.results_dir, "attempt-1/samples.npz")
    a, b = _runtime(settings, "A", store), _runtime(settings, "B", store)
    js, queue = a.jobstore, queue_name("batch")
    r = js.r
    before_start = r.hgetall(js.key("job", job_id))
    lane_score = r.zscore(js.key("lane", "batch"), job_id)
    assert r.llen(queue) == 1 and r.delete(queue) == 1  # a worker took the message (the removal survives)
    result: dict[str, str] = {}
    stale = threading.Thread(target=lambda: result.update(a=run_task(a, job_id)), daemon=True)
    stale.start()
    assert store.frozen["attempt-1/samples.npz"].wait(120)
    assert js.get(job_id).state == "running"
    # the failover: the new master never saw BEGIN's writes
    r.delete(js.key("job", job_id), js.key("lease", job_id))
    r.hset(js.key("job", job_id), mapping=before_start)
    r.zrem(js.key("running"), job_id)
    r.zadd(js.key("lane", "batch"), {job_id: lane_score})
    frozen_for[0] = settings.lease_s  # A's next write asks Redis, which no longer names it
    store.thaw["attempt-1/samples.npz"].set()
    stale.join(120)
    assert result["a"] == "lease-lost"
    rec = js.get(job_id)
    assert rec.state == "queued" and rec.worker in (None, "") and rec.redeliveries == 1
    messages = r.lrange(queue, 0, -1)
    assert len(messages) == 1  # sent again now, not after SCALESPACE_VISIBILITY_TIMEOUT_S
    assert json.loads(base64.b64decode(json.loads(messages[0])["body"]))[0] == [job_id]
    # the uploads that had passed their check before the failover landed; A's commit, after it, was refused:
    # no manifest published, none kept in the job store
    assert "attempt-1/samples.npz" in store.list("jobs", job_id)
    assert store.manifest(job_id) is None and js.manifest(job_id) is None
    assert run_task(b, job_id) == "succeeded"  # the message's delivery runs it, once
    assert js.get(job_id).state == "succeeded"
    _check_results(store, job_id, 1, js)
    # a lease lost to a delivery that holds the job, to an ended job or to a retry's delay: nothing is sent
    assert js.resend_lost_start(job_id) is None
    js.submit("held", SPEC, kind="sample", spec_hash="h", lane="batch", limit=-1)
    assert js.begin("held", "w/1", "w", lease_s=30, max_attempts=5).action == "run"
    assert js.resend_lost_start("held") is None
    r.delete(js.key("lease", "held"))
    assert js.reap(0) == [("held", "batch")] and js.resend_lost_start("held") == "batch"  # queued, held by no one
    assert js.begin("held", "w/2", "w", lease_s=30, max_attempts=5).action == "run"
    assert js.requeue("held", "w/2", "boom", delay_s=60) == 2 and js.resend_lost_start("held") is None
