"""Trajectory statistics computed on two shards and merged equal those of one pass over all samples."""

import json
import math

import pytest
import torch

from scalespace.denoisers import OracleDenoiser
from scalespace.processes import make_process
from scalespace.sampling.pipeline import generate
from scalespace.sampling.schedule import respace
from scalespace.evaluation.forward_trajectory import ForwardTrajectory, GreyHistogram, eval_indices, forward_trajectory
from scalespace.evaluation.sample_trajectory import TrajectoryStats, moment_steps
from scalespace.stats.marginals import OracleMarginal
from scalespace.stats.moments import Moments


def assert_rows_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if isinstance(ra[k], float) and math.isfinite(ra[k]):
                # a Fréchet distance is a difference of traces (~30 here) through square roots of
                # near-zero eigenvalues (constant border pixels): its rounding is ~1e-8 absolute
                tol = 1e-6 if k.startswith("fd") else 1e-9
                assert rb[k] == pytest.approx(ra[k], rel=1e-9, abs=tol), k
            else:
                assert ra[k] == rb[k], k


def test_forward_trajectory_shards_merge_to_one_pass(digits):
    process = make_process("blurring", (1, 8, 8))
    train = digits[:200]
    density = OracleMarginal(process, train)
    idx = eval_indices(process.T, 5)
    grey = GreyHistogram(-4.0, 4.0, 40)
    whole = forward_trajectory(process, train, 40, 7, idx, density, batch_size=16, grey=grey)
    a = forward_trajectory(process, train, 24, 7, idx, density, batch_size=16, grey=grey)
    b = forward_trajectory(process, train, 16, 7, idx, density, batch_size=16, grey=grey, first_id=24)
    # shards travel between workers as JSON
    b = ForwardTrajectory.from_dict(json.loads(json.dumps(b.to_dict())))
    merged = a.merge(b)
    assert merged.count == whole.count == 40
    assert_rows_equal(whole.rows(process), merged.rows(process))
    for i in idx:
        assert torch.equal(merged.grey_counts[i], whole.grey_counts[i])
        assert merged.diffs["post_entropy"].get(i) is None or merged.diffs["post_entropy"][i].count == whole.diffs["post_entropy"][i].count
    # a shard alone is not the whole: the comparison above can fail
    assert a.rows(process)[2]["information_loss"] != pytest.approx(whole.rows(process)[2]["information_loss"], rel=1e-9)


def test_sample_trajectory_stats_shards_merge_to_one_pass(digits):
    process = make_process("vp", (1, 8, 8))
    oracle = OracleDenoiser(process, digits[:200])
    which = ["mean", "variance", "conditional_entropy", "histogram_entropy", "kl_gaussian", "fd_data"]
    ref = Moments.from_samples(digits[200:400].double(), full=True)
    steps = moment_steps(respace(process.T, 10))

    def run(n: int, first: int) -> TrajectoryStats:
        t = TrajectoryStats(which, 64, steps, ref)
        generate(process, oracle, n, 5, steps=10, batch_size=8, first_id=first, trajectory=t)
        return t

    whole, a, b = run(20, 0), run(12, 0), run(8, 12)
    merged = a.merge(TrajectoryStats.from_dict(json.loads(json.dumps(b.to_dict()))))
    rows = whole.rows(process)
    assert {"histogram_entropy", "kl_gaussian", "fd_data"} <= set(rows[0])
    assert_rows_equal(rows, merged.rows(process))
