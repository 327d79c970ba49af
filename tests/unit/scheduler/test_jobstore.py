"""The job store's transitions, each atomic in (embedded) Redis."""

from __future__ import annotations

import json
import time

import pytest

SPEC = {"kind": "sample", "process": "vp", "data": "digits", "n": 4}


def _submit(js, job_id="job-1", lane="batch", limit=10, **kw):
    return js.submit(job_id, SPEC, kind="sample", spec_hash="h" + job_id, lane=lane, limit=limit, **kw)


def test_submit_position_idempotency_and_full_lane(jobstore):
    assert _submit(jobstore, "a").action == "created"
    assert _submit(jobstore, "b").action == "created"
    assert jobstore.queue_position("a", "batch") == 1 and jobstore.queue_position("b", "batch") == 2
    rec = jobstore.get("a")
    assert rec.state == "queued" and rec.spec == SPEC and rec.attempts == 0
    assert _submit(jobstore, "a").action == "exists"
    first = _submit(jobstore, "c", idempotency_key="k1")
    again = jobstore.submit("d", SPEC, kind="sample", spec_hash="hc", lane="batch", limit=10, idempotency_key="k1")
    assert first.action == "created" and again.action == "existing" and again.job_id == "c" and again.spec_hash == "hc"
    assert jobstore.get("d") is None
    assert _submit(jobstore, "e", limit=3).action == "full"
    assert _submit(jobstore, "f", lane="interactive", limit=3).action == "created"  # lanes are separate queues
    ttl = jobstore.r.ttl(jobstore.key("job", "a"))
    assert ttl > jobstore.result_ttl_s  # a live record outlives the redelivery window


def test_submit_through_the_async_client_is_the_same_script_and_outcome(jobstore, settings):
    """The API's event loop submits with JobStore.submit_async: every outcome as submit gives it, the same
    record, and its script loaded again on a Redis that never saw it (a promoted replica)."""
    import asyncio

    from scalespace.scheduler.infra import async_redis_client

    async def run() -> list:
        aclient = async_redis_client(settings)
        try:
            def go(job_id, lane="batch", limit=10, **kw):
                return jobstore.submit_async(aclient, job_id, SPEC, kind="sample", spec_hash="h" + job_id, lane=lane,
                                             limit=limit, **kw)
            out = [await go("a", message=("q-batch", '{"m": 1}')), await go("a"), await go("b", idempotency_key="k"),
                   await go("c", idempotency_key="k")]
            jobstore.r.script_flush()
            out += [await go("d"), await go("e", limit=3)]
            return out
        finally:
            await aclient.aclose()

    created, exists, keyed, existing, after_flush, full = asyncio.run(run())
    assert created.action == "created" and created.position == 1
    assert created.record.id == "a" and created.record.spec == SPEC and created.record.state == "queued"
    assert jobstore.get("a").spec == SPEC and jobstore.get("a").created_at == created.record.created_at
    assert jobstore.r.lrange("q-batch", 0, -1) == ['{"m": 1}']  # the message, pushed with the record
    assert exists.action == "exists" and keyed.action == "created"
    assert existing.action == "existing" and existing.job_id == "b" and jobstore.get("c") is None
    assert after_flush.action == "created" and jobstore.get("d").state == "queued"
    assert full.action == "full" and full.depth == 3 and jobstore.get("e") is None
    # the blocking client sees the same store: the next id goes behind the async ones
    assert _submit(jobstore, "f", limit=10).position == 4


def test_lease_run_commit_and_drops(jobstore):
    _submit(jobstore, "j")
    got = jobstore.begin("j", "w1/x", "w1", lease_s=30, max_attempts=3)
    assert got.action == "run" and got.attempt == 1 and got.fence == 1
    assert jobstore.begin("j", "w2/y", "w2", lease_s=30, max_attempts=3).action == "leased"  # redelivery dropped
    assert jobstore.step("j", "w1/x", {"phase": "sample", "done": 3, "total": 10, "figures": {}}) == ""
    assert jobstore.step("j", "w2/y", None) == "lease-lost"
    out = jobstore.commit("j", "w1/x", got.fence, [{"name": "a.npz", "sha256": "0" * 64, "bytes": 3}], {"ok": True}, 1.5)
    assert out.action == "succeeded"
    rec = jobstore.get("j")
    assert rec.state == "succeeded" and rec.artifacts[0]["name"] == "a.npz" and rec.progress["done"] == 3
    assert rec.committed_attempt == 1 and not rec.manifest_held and jobstore.manifest("j") is None  # none carried
    assert jobstore.begin("j", "w3/z", "w3", lease_s=30, max_attempts=3).action == "terminal"
    assert jobstore.commit("j", "w1/x", 1, [], None, 1.0, manifest=b'{"x": 1}').action == "not-running"  # once
    assert jobstore.manifest("j") is None  # a refused commit keeps nothing
    assert 0 < jobstore.r.ttl(jobstore.key("job", "j")) <= jobstore.result_ttl_s
    assert jobstore.r.exists(jobstore.key("lease", "j")) == 0
    snap = jobstore.snapshot(["batch"])
    assert snap["stats"]["finished|succeeded|sample"] == "1" and snap["durations"]["sample"]["count"] == "1"


def test_a_commit_keeps_the_manifest_beside_the_record_for_as_long_as_the_record(jobstore):
    """The bytes the job's manifest.json gets, kept by the commit: out of the record's hash (every read of the
    record stays small), under a key of their own that expires with it."""
    manifest = json.dumps({"job_id": "k", "attempt": 1, "artifacts": [], "note": "\u00e9" * 2000}, indent=2,
                          ensure_ascii=False).encode()  # UTF-8 beyond ASCII: the same bytes back
    jobstore.submit("k", {"kind": "sample"}, kind="sample", spec_hash="h", lane="batch", limit=-1)
    got = jobstore.begin("k", "w/1", "w", lease_s=30, max_attempts=3)
    assert jobstore.commit("k", "w/1", got.fence, [], None, 0.5, manifest=manifest).action == "succeeded"
    rec = jobstore.get("k")
    assert rec.manifest_held and jobstore.manifest("k") == manifest
    assert "manifest" not in jobstore.r.hgetall(jobstore.key("job", "k"))
    record_ttl, kept_ttl = jobstore.r.ttl(jobstore.key("job", "k")), jobstore.r.ttl(jobstore.key("manifest", "k"))
    assert 0 < kept_ttl <= jobstore.result_ttl_s and abs(record_ttl - kept_ttl) <= 1
    jobstore.r.delete(jobstore.key("manifest", "k"))  # expired
    assert jobstore.manifest("k") is None


def test_cancel_queued_and_running(jobstore):
    _submit(jobstore, "q")
    assert jobstore.cancel("q").action == "cancelled"
    assert jobstore.get("q").state == "cancelled" and jobstore.queue_position("q", "batch") is None
    assert jobstore.cancel("q").action == "terminal"
    _submit(jobstore, "r")
    jobstore.begin("r", "w/1", "w", lease_s=30, max_attempts=3)
    jobstore.step("r", "w/1", {"phase": "sample", "done": 7, "total": 10, "figures": {}})
    assert jobstore.cancel("r").action == "cancelling"
    assert jobstore.get("r").cancel_step == 7
    assert jobstore.step("r", "w/1", {"phase": "sample", "done": 8, "total": 10, "figures": {}}) == "cancelled"
    assert jobstore.finish("r", "w/1", "cancelled", "cancelled by request", stopped_step=8).action == "cancelled"
    assert jobstore.cancel("missing").action == "missing"


def test_deadline_expires_queued_job(jobstore):
    _submit(jobstore, "d", deadline_s=0.05)
    time.sleep(0.1)
    assert jobstore.get("d").state == "expired"  # looked at: expired
    _submit(jobstore, "e", deadline_s=0.05)
    time.sleep(0.1)
    assert jobstore.begin("e", "w/1", "w", lease_s=30, max_attempts=3).action == "expired"  # delivered: expired


def test_reaper_requeues_a_lost_worker_and_the_cap_dead_letters(jobstore):
    _submit(jobstore, "p")
    for attempt in (1, 2):
        assert jobstore.begin("p", f"w/{attempt}", "w", lease_s=0.05, max_attempts=2).action == "run"
        time.sleep(0.12)  # the lease lapses: the worker is gone
        assert jobstore.reap(0.05) == [("p", "batch")]
        assert jobstore.reap(0.05) == []  # requeued once
        rec = jobstore.get("p")
        assert rec.state == "queued" and rec.redeliveries == attempt and "was lost" in rec.error
    dead = jobstore.begin("p", "w/3", "w", lease_s=0.05, max_attempts=2)
    assert dead.action == "dead" and "gave up after 2 attempts" in dead.reason
    rec = jobstore.get("p")
    assert rec.state == "failed" and rec.dead_letter and "was lost" in rec.error
    assert jobstore.dead_letters() == ["p"]


def test_a_job_queued_too_long_is_sent_again_once_per_period(jobstore):
    """resend: only queued jobs older than the period, not one waiting for its retry backoff nor one that left
    its lane's queue, each at most once per period."""
    lane = jobstore.key("lane", "batch")
    old = time.time() - 100
    for job_id in ("old", "young", "backoff", "running"):
        _submit(jobstore, job_id)
    jobstore.begin("backoff", "w/1", "w", lease_s=30, max_attempts=3)
    assert jobstore.requeue("backoff", "w/1", "S3 unreachable", delay_s=3600) == 2
    jobstore.begin("running", "w/2", "w", lease_s=30, max_attempts=3)
    jobstore.r.zadd(lane, {"old": old, "backoff": old, "running": old})  # "running" as a stale entry
    assert jobstore.resend(50) == [("old", "batch")]
    assert jobstore.resend(50) == []  # once per period
    assert jobstore.resend(200) == []  # nothing queued that long
    rec = jobstore.get("old")
    assert rec.state == "queued" and rec.redeliveries == 1 and jobstore.r.zscore(lane, "old") == pytest.approx(old)  # its place kept
    jobstore.r.hset(jobstore.key("job", "old"), "resent_at", old)  # a period later: sent again
    _submit(jobstore, "other", lane="interactive")
    jobstore.r.zadd(jobstore.key("lane", "interactive"), {"other": old})
    assert sorted(jobstore.resend(50)) == [("old", "batch"), ("other", "interactive")]
    assert jobstore.resend(50, lanes=("batch",)) == []
    assert jobstore.snapshot(["batch"])["stats"]["resent"] == "3"


def test_janitor_skip_takes_off_only_jobs_with_nothing_left_to_tidy(jobstore):
    """Succeeded with one attempt ever: off the list. A second attempt's leftovers or a failed job: they stay."""
    jan = jobstore.key("janitor")
    _submit(jobstore, "one")
    got = jobstore.begin("one", "w/1", "w", lease_s=30, max_attempts=3)
    jobstore.commit("one", "w/1", got.fence, [], None, 0.1)
    _submit(jobstore, "two")
    jobstore.begin("two", "w/1", "w", lease_s=0.05, max_attempts=3)
    time.sleep(0.12)
    assert jobstore.reap(0.05) == [("two", "batch")]
    got = jobstore.begin("two", "w/2", "w", lease_s=30, max_attempts=3)
    assert got.fence == 2 and jobstore.commit("two", "w/2", got.fence, [], None, 0.1).action == "succeeded"
    _submit(jobstore, "bad")
    jobstore.begin("bad", "w/1", "w", lease_s=30, max_attempts=3)
    jobstore.finish("bad", "w/1", "failed", "boom")
    assert set(jobstore.r.zrange(jan, 0, -1)) == {"one", "two", "bad"}
    assert jobstore.janitor_skip(["one", "two", "bad", "missing"]) == 1
    assert set(jobstore.r.zrange(jan, 0, -1)) == {"two", "bad"}  # attempt 1's folder of "two" is left to remove
    assert jobstore.janitor_skip(["one"]) == 0 and jobstore.janitor_skip([]) == 0


def test_requeue_with_backoff_and_retry_by_request(jobstore):
    _submit(jobstore, "t")
    jobstore.begin("t", "w/1", "w", lease_s=30, max_attempts=3)
    assert jobstore.requeue("t", "w/1", "S3 unreachable", delay_s=0.1) == 2
    assert jobstore.due() == []
    time.sleep(0.15)
    assert jobstore.due() == [("t", "batch")] and jobstore.due() == []
    rec = jobstore.get("t")
    assert rec.state == "queued" and rec.retries == 1 and rec.attempts == 1
    jobstore.begin("t", "w/2", "w", lease_s=30, max_attempts=3)
    assert jobstore.requeue("t", "w/2", "shutting down", refund=True) == 1
    assert jobstore.get("t").attempts == 1  # a worker's shutdown is not the job's attempt
    assert jobstore.retry("t", limit=10, deadline_s=None).action == "refused"
    jobstore.begin("t", "w/3", "w", lease_s=30, max_attempts=3)
    jobstore.finish("t", "w/3", "failed", "boom")
    out = jobstore.retry("t", limit=10, deadline_s=60)
    rec = jobstore.get("t")
    assert out.action == "queued" and rec.state == "queued" and rec.attempts == 0 and rec.error is None
    assert rec.deadline_at > time.time() + 50


def test_sweep_waits_for_children_and_the_last_one_wakes_it(jobstore):
    _submit(jobstore, "sw")
    jobstore.begin("sw", "w/1", "w", lease_s=30, max_attempts=3)
    for c in ("sw.c000", "sw.c001"):
        jobstore.submit(c, SPEC, kind="sample", spec_hash="x", lane="batch", limit=-1, parent="sw")
    assert jobstore.wait_for_children("sw", "w/1", ["sw.c000", "sw.c001"]) == 2
    assert jobstore.begin("sw", "w/2", "w", lease_s=30, max_attempts=3).action == "waiting"
    assert not jobstore.heartbeat("sw", "w/1", 30)  # the fan-out's late heartbeat does not take the lease back
    assert jobstore.r.exists(jobstore.key("lease", "sw")) == 0
    assert jobstore.reap(0) == []  # a waiting sweep holds no lease and is not a lost job
    assert jobstore.cancel("sw.c000").ready_parent == ""
    child = jobstore.begin("sw.c001", "w/3", "w", lease_s=30, max_attempts=3)
    assert jobstore.commit("sw.c001", "w/3", child.fence, [], {}, 0.1).ready_parent == "sw"  # the last child names its parent
    parent = jobstore.get("sw")
    assert parent.progress == {"phase": "children", "done": 2, "total": 2} and parent.waiting
    again = jobstore.begin("sw", "w/4", "w", lease_s=30, max_attempts=3)
    assert again.action == "run" and jobstore.get("sw").attempts == 1  # aggregation is not a new attempt


def test_list_filters_and_worker_registry(jobstore):
    _submit(jobstore, "l1")
    _submit(jobstore, "l2", lane="nightly")
    jobstore.cancel("l1")
    assert [r.id for r in jobstore.list()] == ["l2", "l1"]
    assert [r.id for r in jobstore.list(state="cancelled")] == ["l1"]
    assert [r.id for r in jobstore.list(lane="nightly")] == ["l2"]
    assert jobstore.list(kind="train") == []
    jobstore.register_worker("w@h", 5, {"pid": 1})
    assert jobstore.workers() == ["w@h"]
    jobstore.unregister_worker("w@h")
    assert jobstore.workers() == []
    assert json.loads(jobstore.r.hget(jobstore.key("job", "l2"), "spec")) == SPEC


def test_the_live_workers_are_read_from_one_key_and_a_lapsed_beat_is_not_listed(jobstore):
    """/v1/ready and every /metrics scrape list the workers: one command however many jobs the store holds (a
    SCAN of the keyspace would take a command per 500 keys); a worker whose beat lapsed is not listed, and one
    that lapsed more than WORKER_FORGET_S ago leaves the set at the next beat."""
    from scalespace.scheduler.jobstore import WORKER_FORGET_S

    r = jobstore.r
    pipe = r.pipeline(transaction=False)
    for k in range(5000):
        pipe.hset(jobstore.key("job", f"filler-{k}"), "state", "succeeded")
    pipe.execute()
    jobstore.register_worker("b@h", 30, {"pid": 2})
    jobstore.register_worker("a@h", 30, {"pid": 1})
    jobstore.register_worker("short@h", 0.05, {"pid": 3})
    before = r.info("stats")["total_commands_processed"]
    scans = r.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)
    listed = jobstore.workers()
    assert r.info("stats")["total_commands_processed"] - before == 3  # the two INFO calls and one read
    assert r.info("commandstats").get("cmdstat_scan", {}).get("calls", 0) == scans
    assert listed == ["a@h", "b@h", "short@h"]
    assert json.loads(r.get(jobstore.key("worker", "a@h"))) == {"pid": 1}
    time.sleep(0.1)
    assert jobstore.workers() == ["a@h", "b@h"]  # short@h's beat lapsed
    assert r.zscore(jobstore.key("workers"), "short@h") is not None  # kept a while (a late beat comes back)
    r.zadd(jobstore.key("workers"), {"killed@h": time.time() - WORKER_FORGET_S - 1})
    jobstore.register_worker("a@h", 30, {"pid": 1})
    assert r.zscore(jobstore.key("workers"), "killed@h") is None and jobstore.workers() == ["a@h", "b@h"]
    assert 0 < r.ttl(jobstore.key("workers")) <= 30 + WORKER_FORGET_S
    jobstore.unregister_worker("b@h")
    assert jobstore.workers() == ["a@h"] and r.get(jobstore.key("worker", "b@h")) is None


def test_duration_buckets():
    from scalespace.scheduler.jobstore import duration_bucket

    assert duration_bucket(0.1) == "le:0.5" and duration_bucket(3) == "le:5" and duration_bucket(1e9) == "le:+Inf"


@pytest.mark.parametrize("raw, expected", [({"attempts": "3", "created_at": "1.5", "cancel_requested": "1", "error": ""},
                                             {"attempts": 3, "created_at": 1.5, "cancel_requested": True, "error": None})])
def test_from_hash(raw, expected):
    from scalespace.scheduler.jobstore import JobRecord

    rec = JobRecord.from_hash(raw)
    assert {k: getattr(rec, k) for k in expected} == expected


def test_a_record_read_back_is_typed_and_unknown_fields_still_load(jobstore):
    from scalespace.scheduler.jobstore import JobRecord

    _submit(jobstore, "typed", deadline_s=60)
    rec = jobstore.get("typed")
    assert isinstance(rec, JobRecord) and rec.id == "typed" and rec.kind == "sample" and rec.state == "queued"
    assert isinstance(rec.spec, dict) and rec.spec == SPEC and rec.spec_hash == "htyped"
    for name in ("attempts", "redeliveries", "retries", "progress_done", "fence", "committed_attempt"):
        assert type(getattr(rec, name)) is int and getattr(rec, name) == 0, name
    assert type(rec.created_at) is float and type(rec.deadline_s) is float and rec.deadline_s == 60.0
    assert rec.deadline_at == pytest.approx(rec.created_at + 60, abs=1e-3)
    for name in ("started_at", "finished_at", "duration_s", "outage_since", "parent", "idempotency_key", "worker",
                 "error", "progress", "artifacts", "summary", "children", "cancel_step", "stopped_step"):
        assert getattr(rec, name) is None, name
    assert rec.cancel_requested is False and rec.dead_letter is False and rec.waiting is False
    with pytest.raises(AttributeError):
        rec.state = "running"  # frozen
    # a hash written by another version, with a field this one does not know, still loads
    jobstore.r.hset(jobstore.key("job", "typed"), mapping={"some_future_field": "x", "attempts": "2"})
    again = jobstore.get("typed")
    assert again.attempts == 2 and not hasattr(again, "some_future_field")
    assert [r.id for r in jobstore.list()] == ["typed"]
    old = JobRecord.from_hash({"id": "old", "state": "failed", "legacy": "1", "progress": "not json", "stopped_step": "4"})
    assert old.id == "old" and old.state == "failed" and old.progress is None and old.stopped_step == 4
