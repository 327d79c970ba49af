"""One admission check at every door: each size field over its limit is a 422 naming it, the memory estimate
refuses what would not fit, and the API refuses exactly what a worker (run_job) refuses, with its message."""

from __future__ import annotations

import pytest

from scalespace import ScalespaceError
from scalespace.jobs.admission import estimate_bytes
from scalespace.jobs.run import run_job
from scalespace.jobs.specs import parse_spec
from scalespace.storage import LocalStore

S = {"kind": "sample", "process": "vp", "data": "digits"}
E = {"kind": "evaluate", "process": "vp", "data": "digits"}
TR = {"kind": "train", "process": "vp", "data": "digits"}
SW = {"kind": "sweep", "name": "s", "processes": ["vp"], "data": ["digits"]}

@pytest.fixture(scope="module")
def api(embedded_redis, tmp_path_factory):
    """One API for the module's many cases, on Redis database 0 (the per-test databases start at 1)."""
    from fastapi.testclient import TestClient

    from scalespace.config import Settings
    from scalespace.scheduler.api import create_app

    settings = Settings(redis_url=f"unix://{embedded_redis.socket_file}?db=0", api_token="unit-token",
                        results_dir=str(tmp_path_factory.mktemp("admission") / "results"))
    embedded_redis.flushdb()
    with TestClient(create_app(settings), headers={"Authorization": "Bearer unit-token"}) as client:
        yield client
    embedded_redis.flushdb()


#: (spec, the field the 422 names): every size field of every kind, one past its limit
OVER = [
    ({**S, "n": 100_001}, "spec.n"),
    ({**S, "steps": 100_001}, "spec.steps"),
    ({**S, "batch_size": 65_537}, "spec.batch_size"),
    ({**S, "data_size": 257}, "spec.data_size"),
    ({**S, "data_limit": 100_001}, "spec.data_limit"),
    ({**S, "process_params": {"T": 100_001}}, "spec.process_params.T"),
    ({**S, "process": "heat", "process_params": {"K": 100_001}}, "spec.process_params.K"),
    ({**S, "process": "osmosis", "process_params": {"K": 10_001}}, "spec.process_params.K"),
    ({**S, "process_params": {"schedule": "custom", "betas": [0.01] * 100_001}}, "spec.process_params.betas"),
    ({**E, "n": 100_001}, "spec.n"),
    ({**E, "n_invariance": 100_001}, "spec.n_invariance"),
    ({**E, "n_reverse": 100_001}, "spec.n_reverse"),
    ({**E, "reverse_steps": 100_001}, "spec.reverse_steps"),
    ({**E, "eval_steps": 10_001}, "spec.eval_steps"),
    ({**E, "invariance_steps": 1_001}, "spec.invariance_steps"),
    ({**E, "density_cells": 20_001}, "spec.density_cells"),
    ({**E, "batch_size": 65_537}, "spec.batch_size"),
    ({**E, "robustness": {"n": 100_001}}, "spec.robustness.n"),
    ({**E, "robustness": {"steps": 100_001}}, "spec.robustness.steps"),
    ({**E, "robustness": {"step_counts": [5, 100_001]}}, "spec.robustness.step_counts"),
    ({**E, "robustness": {"seeds": list(range(65))}}, "spec.robustness.seeds"),
    ({**E, "robustness": {"eps": [0.1] * 65}}, "spec.robustness.eps"),
    ({**E, "robustness": {"n_boot": 10_001}}, "spec.robustness.n_boot"),
    ({**TR, "eval_samples": 100_001}, "spec.eval_samples"),
    ({**TR, "eval_steps": 100_001}, "spec.eval_steps"),
    ({**TR, "steps": 1_000_001}, "spec.steps"),
    ({**TR, "batch_size": 65_537}, "spec.batch_size"),
    ({**TR, "eval_every": 1}, "spec.eval_every"),
    ({**TR, "network": {"channels": 1025}}, "spec.network.channels"),
    ({**TR, "network": {"channel_mults": [1] * 7}}, "spec.network.channel_mults"),
    ({**TR, "network": {"num_res_blocks": 9}}, "spec.network.num_res_blocks"),
    ({**TR, "network": {"heads": 17}}, "spec.network.heads"),
    ({**SW, "template": {"kind": "evaluate", "n_reverse": 100_001}}, "spec.template.n_reverse"),
    ({**SW, "template": {"kind": "train", "network": {"channels": 1025}}}, "spec.template.network.channels"),
    ({**SW, "processes": ["vp", "ve", "blurring", "heat"], "data": ["digits", "gaussian-mixture", "fashion-mnist"],
      "template": {"kind": "sample", "n": 100_000}}, "spec.template"),  # 12 children x 100,000 samples
]


@pytest.mark.parametrize("spec,field", OVER, ids=[f"{s['kind']}-{f}" for s, f in OVER])
def test_every_size_field_over_its_limit_is_a_422_naming_it(api, spec, field):
    r = api.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422 and r.json()["field"] == field, r.json()


def test_a_sweep_fanning_out_beyond_the_limit_is_refused(settings):
    from fastapi.testclient import TestClient

    from scalespace.scheduler.api import create_app

    app = create_app(settings.model_copy(update={"max_sweep_children": 3}))
    with TestClient(app, headers={"Authorization": f"Bearer {settings.api_token}"}) as client:
        r = client.post("/v1/jobs", json={"spec": {**SW, "processes": ["vp", "ve"], "data": ["digits", "gaussian-mixture"]}})
    assert r.status_code == 422 and r.json()["field"] == "spec.processes", r.json()
    assert "SCALESPACE_MAX_SWEEP_CHILDREN" in r.json()["detail"]


MEMORY = {**S, "n": 100_000, "data_size": 256, "batch_size": 65_536}


def test_the_memory_estimate_refuses_a_batch_that_would_not_fit(api):
    r = api.post("/v1/jobs", json={"spec": MEMORY})
    body = r.json()
    assert r.status_code == 422 and body["field"] == "spec.batch_size", body
    assert "SCALESPACE_MAX_JOB_BYTES" in body["detail"] and "set batch_size to at most" in body["detail"]


def test_the_memory_estimate_counts_the_batch_and_the_samples():
    terms = estimate_bytes(parse_spec(MEMORY))
    d = 256 * 256
    assert terms["batch"] == 65_536 * d * 4 * 8  # 128 GiB: the batch alone is far above 16 GiB
    assert terms["samples"] == 100_000 * d * 4 * 2
    small = estimate_bytes(parse_spec({**S, "n": 64}))
    assert sum(small.values()) < 2**26  # a default digits job: a few MiB


def test_an_osmosis_oracle_counts_its_evolved_training_set():
    from scalespace.processes import make_process

    spec = parse_spec({**S, "process": "osmosis", "data_size": 64})
    p = make_process("osmosis", (1, 64, 64), {})
    assert estimate_bytes(spec, p)["oracle"] >= (p.T + 1) * 1437 * 64 * 64 * 20


#: the issue's cases: each got 201 and then failed (or ran away) on a worker
WORKER_CASES = [
    {**E, "n_reverse": 1_000_000},
    {**E, "robustness": {"n": 10**9}},
    {**SW, "template": {"kind": "evaluate", "n_invariance": 10**9}},
    {**TR, "network": {"channels": 1_000_000}},
    {**TR, "eval_steps": 1e9},
    {**TR, "eval_extractor": "../../etc/passwd"},
    {**S, "process": "osmosis", "process_params": {"guidance": "per_sample"}},
    {**E, "process": "osmosis", "process_params": {"guidance": "per_sample"}},
    {**SW, "template": {"kind": "sample", "process_params": {"guidance": "per_sample"}}, "processes": ["osmosis"]},
    MEMORY,
    {**E, "process": "osmosis", "data_size": 64},  # the osmosis oracle's evolved training set (4 GiB cap)
    {**E, "data_size": 256, "batch_size": 65_536},
    {**TR, "data_size": 256, "batch_size": 65_536, "network": {"channels": 256}},
]


@pytest.mark.parametrize("spec", WORKER_CASES, ids=range(len(WORKER_CASES)))
def test_the_api_refuses_exactly_what_a_worker_refuses(api, tmp_path, spec):
    with pytest.raises(ScalespaceError) as worker:
        run_job(spec, LocalStore(tmp_path / "results"))  # what a worker (and `scalespace run`) runs
    assert not (tmp_path / "results" / "jobs").exists() or not any((tmp_path / "results" / "jobs").iterdir())
    r = api.post("/v1/jobs", json={"spec": spec})
    assert r.status_code == 422, r.json()
    assert r.json()["detail"] == f"spec.{worker.value}"


def test_scalespace_run_refuses_with_exit_2(tmp_path, capsys):
    import yaml

    from scalespace.cli import main

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(MEMORY))
    rc = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "batch_size:" in err and "SCALESPACE_MAX_JOB_BYTES" in err and len(err.splitlines()) == 1
    assert not list((tmp_path / "out").rglob("manifest.json")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("name", ["digits", "gaussian-mixture"])
def test_the_split_sizes_the_estimate_reads_are_the_data_sets(name):
    from scalespace.data import load_dataset
    from scalespace.data.sizes import split_sizes

    assert split_sizes(name) == (len(load_dataset(name, "train").images), len(load_dataset(name, "heldout").images))
    assert split_sizes(name, 100) == (100, len(load_dataset(name, "heldout").images))
