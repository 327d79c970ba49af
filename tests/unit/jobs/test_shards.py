"""Sharded sample and evaluate jobs, embedded: the shards' union is the unsharded job bit for bit, their
statistics merge (in the batch tree) to the unsharded figures bit for bit, and every door refuses a split that
cannot be made."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from scalespace import ScalespaceError
from scalespace.jobs import run_job
from scalespace.jobs.admission import admit
from scalespace.jobs.context import JobContext
from scalespace.jobs.shards import gather, plan_shards, shard_count, shard_range
from scalespace.jobs.specs import DEFAULT_SHARD_SIZE, parse_spec
from scalespace.storage import LocalStore, StoreUnavailable

STATS = ["mean", "variance", "conditional_entropy", "histogram_entropy", "kl_gaussian", "fd_data"]
SAMPLE = {"kind": "sample", "process": "vp", "data": "digits", "n": 18, "batch_size": 4, "steps": 6, "seed": 3,
          "statistics": STATS}
EVALUATE = {"kind": "evaluate", "process": "vp", "data": "digits", "data_limit": 200, "n": 24, "n_reverse": 20,
            "batch_size": 8, "eval_steps": 6, "reverse_steps": 5, "n_invariance": 8, "invariance_steps": 2,
            "density_cells": 100,
            "robustness": {"n": 8, "eps": [0.1], "steps": 4, "seeds": [0, 1], "step_counts": [2, 4], "n_boot": 5}}


def _samples(store, job_id):
    with np.load(io.BytesIO(store.read_artifact(job_id, "samples.npz")), allow_pickle=False) as z:
        return z["samples"]


# --- the split -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch,count", [(18, 4, 3), (20, 4, 5), (7, 1, 7), (1000, 64, 4), (65, 64, 2), (9, 4, 2)])
def test_the_shards_cover_every_sample_once_in_whole_batches(n, batch, count):
    ranges = [shard_range(n, batch, k, count) for k in range(count)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (lo, hi), (nxt, _) in zip(ranges, ranges[1:]):
        assert hi == nxt  # contiguous, no gap, no overlap
    for lo, hi in ranges:
        assert hi > lo and lo % batch == 0  # none empty; each starts on a batch of the unsharded job
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 2 * batch  # balanced to within a batch (the last may be short)


def test_auto_gives_one_shard_per_shard_size_samples_at_most_one_per_batch():
    spec = parse_spec({**SAMPLE, "n": 5000, "batch_size": 64, "shards": "auto"})
    assert shard_count(spec) == math.ceil(5000 / DEFAULT_SHARD_SIZE) == 5
    assert shard_count(parse_spec({**SAMPLE, "n": 5000, "batch_size": 64, "shards": "auto", "shard_size": 100})) == 50
    assert shard_count(parse_spec({**SAMPLE, "n": 100, "batch_size": 64, "shards": "auto", "shard_size": 10})) == 2
    assert shard_count(parse_spec({**SAMPLE, "shards": "auto"})) == 1
    # an evaluate job splits the larger of n and n_reverse
    assert shard_count(parse_spec({**EVALUATE, "n": 16, "n_reverse": 40, "shards": "auto", "shard_size": 16})) == 3
    # a shard is never split again
    assert shard_count(parse_spec({**SAMPLE, "shards": 3, "shard": {"index": 1, "count": 3}})) == 1


@pytest.mark.parametrize("bad,field,words", [
    ({"shards": 0}, "shards", "from 1 to 1024"),
    ({"shards": 1025}, "shards", "from 1 to 1024"),
    ({"shards": "many"}, "shards", "or 'auto'"),
    ({"shards": True}, "shards", "or 'auto'"),
    ({"shards": 1.5}, "shards", "or 'auto'"),
    ({"shard_size": 0}, "shard_size", "greater than or equal to 1"),
    ({"shard": {"index": 3, "count": 3}}, "shard", "not below count"),
    ({"shard": {"index": 0, "count": 1}}, "shard.count", "greater than or equal to 2"),
    ({"shard": {"index": 0}}, "shard.count", "Field required"),
])
def test_bad_shard_fields_are_refused_naming_the_field(bad, field, words):
    with pytest.raises(ScalespaceError) as e:
        parse_spec({**SAMPLE, **bad})
    assert str(e.value).startswith(f"{field}: ") and words in str(e.value), str(e.value)


def test_more_shards_than_batches_is_refused_by_the_one_admission_check():
    with pytest.raises(ScalespaceError, match=r"^shards: 6 shards of 18 samples \(n\) in batches of 4 would leave "
                                              r"shards empty; use at most 5 shards"):
        admit({**SAMPLE, "shards": 6})
    with pytest.raises(ScalespaceError, match=r"^shards: .*the larger of n and n_reverse.*use at most 3 shards"):
        admit({**EVALUATE, "shards": 4})
    admit({**SAMPLE, "shards": 5})  # one batch each is fine


def test_the_api_refuses_an_impossible_split_with_the_field(api):
    r = api.post("/v1/jobs", json={"spec": {**SAMPLE, "shards": 6}})
    assert r.status_code == 422 and r.json()["field"] == "spec.shards", r.json()
    r = api.post("/v1/jobs", json={"spec": {**SAMPLE, "shards": "lots"}})
    assert r.status_code == 422 and r.json()["field"] == "spec.shards", r.json()


def test_an_unsharded_spec_keeps_its_hash_and_a_sharded_one_differs():
    plain = parse_spec(SAMPLE)
    assert "shards" not in plain.canonical_dump() and "shard" not in plain.canonical_dump()
    assert parse_spec({**SAMPLE, "shards": 1}).spec_hash() == plain.spec_hash()
    assert parse_spec({**SAMPLE, "shards": 3}).spec_hash() != plain.spec_hash()


def test_the_plan_names_each_shard_and_its_slice():
    shards = plan_shards(parse_spec({**SAMPLE, "shards": 3}), "job-1")
    assert [s.job_id for s in shards] == ["job-1.s000", "job-1.s001", "job-1.s002"]
    for k, s in enumerate(shards):
        child = parse_spec(s.spec)
        assert child.shard.index == k and child.shard.count == 3 and child.shards == 3
        assert {key: v for key, v in s.spec.items() if key not in ("shards", "shard")} == \
            {key: v for key, v in parse_spec(SAMPLE).model_dump(mode="json").items() if key not in ("shards", "shard")}
    assert plan_shards(parse_spec(SAMPLE), "job-1") == []


# --- sample jobs -----------------------------------------------------------------------------------


def test_a_sharded_sample_job_is_the_unsharded_one_bit_for_bit(tmp_path):
    store = LocalStore(tmp_path)
    one = run_job({**SAMPLE, "pictures": True}, store, job_id="one")
    events = []
    three = run_job({**SAMPLE, "pictures": True, "shards": 3}, store, job_id="three", progress=events.append)
    np.testing.assert_array_equal(_samples(store, "three"), _samples(store, "one"))
    # every statistic bit for bit (merged in the batch tree), fd_data's matrix square root included
    assert store.read_artifact("three", "trajectory.json") == store.read_artifact("one", "trajectory.json")
    assert three["summary"]["quality"] == one["summary"]["quality"] and three["summary"]["shards"] == 3
    assert three["quality"] == one["quality"]
    for name in ("grid.png", "sample_grid.png", "reverse_trajectory.png", "scale_space.png"):
        assert store.read_artifact("three", name) == store.read_artifact("one", name), name
    # the shards are jobs of their own, each with its slice
    assert [s["ids"] for s in three["shards"]] == [[0, 3], [4, 11], [12, 17]]  # 5 batches of 4: 1, 2, 2
    for k, (lo, hi) in enumerate([(0, 4), (4, 12), (12, 18)]):
        np.testing.assert_array_equal(_samples(store, f"three.s{k:03d}"), _samples(store, "one")[lo:hi])
    # progress: one "sample" phase over all shards, counted on from shard to shard up to the whole job's steps
    mine = [(p.done, p.total) for p in events if p.job_id == "three" and p.phase == "sample"]
    assert mine and all(t == mine[0][1] for _, t in mine) and mine[-1][0] == mine[0][1] == 5 * 6
    assert [d for d, _ in mine] == sorted(d for d, _ in mine)
    assert not [p for p in events if p.job_id != "three"]  # the shards report as the job


def test_a_sharded_run_reuses_finished_shards(tmp_path):
    store = LocalStore(tmp_path)
    run_job({**SAMPLE, "shards": 3}, store, job_id="first")
    # the same shards under a second parent: the second finds the first's results only for its own ids
    store2 = LocalStore(tmp_path / "second")
    run_job({**SAMPLE, "shards": 3, "shard": {"index": 1, "count": 3}}, store2, job_id="again.s001")
    before = store2.get_json("jobs", "again.s001", "manifest.json")
    run_job({**SAMPLE, "shards": 3}, store2, job_id="again")
    assert store2.get_json("jobs", "again.s001", "manifest.json") == before  # not run twice
    np.testing.assert_array_equal(_samples(store2, "again"), _samples(store, "first"))


def test_in_the_service_a_missing_shard_result_is_waited_out_not_run_by_the_parent(tmp_path):
    store = LocalStore(tmp_path)
    shards = plan_shards(parse_spec({**SAMPLE, "shards": 2}), "svc")
    ran = []
    ctx = JobContext(job_id="svc", store=store, attempt=1, run_child=lambda *a: ran.append(a))
    with pytest.raises(StoreUnavailable, match="svc.s000 has ended but its manifest is not in the store yet"):
        gather(ctx, shards)
    assert ran == []  # embedded it would run the shard; the service's parent never does


# --- evaluate jobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("process,checks", [
    ("vp", ["forward", "invariances", "reverse", "robustness"]),
    ("osmosis", ["forward", "reverse", "density"]),
])
def test_a_sharded_evaluate_job_reports_the_unsharded_figures(tmp_path, process, checks):
    store = LocalStore(tmp_path)
    spec = {**EVALUATE, "process": process, "checks": checks}
    if process == "osmosis":
        spec["process_params"] = {"K": 6}
    run_job(spec, store, job_id="one")
    run_job({**spec, "shards": 3}, store, job_id="three")
    one = json.loads(store.read_artifact("one", "report.json"))
    three = json.loads(store.read_artifact("three", "report.json"))
    assert [s["forward_ids"] for s in three.pop("shards")] == [[0, 7], [8, 15], [16, 23]]
    for report in (one, three):
        for key in ("job_id", "created_at", "timings", "spec"):
            report.pop(key)
    assert three == one  # every figure bit for bit
    assert store.manifest("three")["summary"] == store.manifest("one")["summary"]
