"""The arithmetic of bench/scale.py's control-plane projection (the benchmark itself is never run by tests)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_per_redis_is_the_core_over_the_cost_per_worker(scale):
    assert scale.workers_per_redis(0.001) == pytest.approx(1000)  # 1 ms of Redis CPU per 1-s shard
    assert scale.workers_per_redis(0.001, 2.0) == pytest.approx(2000)  # shards twice as long: twice the workers
    assert scale.workers_per_redis(0.001, 1.0, core=0.5) == pytest.approx(500)
    assert scale.workers_per_redis(0.001, 1.0, per_worker_s=0.001) == pytest.approx(500)
    assert scale.workers_per_redis(0.0) == math.inf


def test_workers_per_redis_with_a_cost_per_pair_fills_the_core_exactly(scale):
    cpu, pair = 0.001, 2.5e-7  # REAP: every worker's pulse walks every running job
    n = scale.workers_per_redis(cpu, 1.0, per_worker_pair_s=pair)
    assert n == pytest.approx(1000 * (math.sqrt(2) - 1) * 2, rel=1e-9)  # the root of 2.5e-7 n^2 + 1e-3 n = 1
    assert n * cpu + n * n * pair == pytest.approx(1.0)
    assert n < scale.workers_per_redis(cpu)


@pytest.mark.parametrize("kwargs", [dict(cpu_per_shard_s=-1.0), dict(cpu_per_shard_s=1.0, shard_s=0.0),
                                    dict(cpu_per_shard_s=1.0, per_worker_pair_s=-1.0),
                                    dict(cpu_per_shard_s=1.0, core=0.0)])
def test_workers_per_redis_refuses_impossible_costs(scale, kwargs):
    with pytest.raises(ValueError):
        scale.workers_per_redis(**kwargs)


def test_janitor_backlog_counts_the_parent_record_of_a_sharded_job(scale):
    # each worker's pulse tidies at most 10 records per 10 s: one a second, what a plain 1-s job ends
    assert scale.janitor_backlog_per_s(100, 1.0, 1, heartbeat_s=10) == pytest.approx(0.0)
    assert scale.janitor_backlog_per_s(100, 1.0, 8, heartbeat_s=10) == pytest.approx(12.5)  # 9 records per 8 s
    assert scale.janitor_backlog_per_s(100, 2.0, 8, heartbeat_s=10) == pytest.approx(-43.75)
