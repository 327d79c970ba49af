"""Building blocks of the property checks: monotonicity, F2 and R3 (the Fréchet figures they use: tests/unit/stats)."""

import math

import pytest
import torch

from scalespace.data import load_dataset
from scalespace.evaluation.forward import check_f2, monotone
from scalespace.evaluation.forward_trajectory import eval_indices, forward_trajectory
from scalespace.evaluation.reverse import check_r3
from scalespace.processes import make_process
from scalespace.processes.vp import VP


def test_monotone_weak_strict_and_tolerance():
    up = {0: 0.0, 1: 1.0, 2: 1.0, 3: 2.0}
    assert monotone(up, +1).holds and not monotone(up, +1, strict=True).holds
    dip = {0: 0.0, 1: 1.0, 2: 0.9, 3: 2.0}
    m = monotone(dip, +1, 0.05)
    assert not m.holds and m.wrong_steps == [1] and m.worst == pytest.approx(0.1) and m.worst_at == 1
    assert monotone(dip, +1, {1: 0.2}).holds  # within that step's allowance
    assert monotone({0: 3.0, 1: None, 2: 2.0, 3: -math.inf, 4: 1.0}, -1).holds  # gaps are skipped
    assert monotone({0: 1.0}, +1).worst == 0.0


class BrokenVP(VP):
    """A vp whose transitions add too much noise: two-step sampling does not reproduce the marginals."""

    def transition(self, s, t):
        a, s2 = super().transition(s, t)
        return a, s2 + 0.2


def test_f2_holds_for_vp_and_catches_a_broken_transition():
    data = load_dataset("digits").images[:64]
    good = make_process("vp", (1, 8, 8))
    traj = forward_trajectory(good, data, 16, 0, eval_indices(good.T, 6))
    c = check_f2(good, traj, data)
    assert c.kind == "test" and c.holds and c.figure > c.tolerance
    bad = BrokenVP((1, 8, 8))
    c = check_f2(bad, forward_trajectory(bad, data, 16, 0, eval_indices(bad.T, 6)), data)
    assert c.holds is False and c.figure <= c.tolerance


def test_r3_blurring_turns_between_015_and_027_at_32x32_but_vp_is_monotone():
    blur = make_process("blurring", (3, 32, 32))
    r3 = check_r3(blur)
    assert r3.holds is False and r3.expected == "report" and r3.agrees
    lo, hi = r3.details["turning"]
    assert 0.13 <= lo <= 0.17 and 0.25 <= hi <= 0.29
    vp = check_r3(make_process("vp", (3, 32, 32)))
    assert vp.holds is True and vp.expected == "holds"
