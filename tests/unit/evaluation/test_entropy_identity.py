"""H(p_t) through the identity H(u_t | u_0) + ln n - H(u_0 | u_t), beside the direct -E log p_t; trajectory layouts."""

import math

import pytest

from scalespace import ScalespaceError
from scalespace.evaluation.forward_trajectory import FORMAT, ForwardTrajectory, eval_indices, forward_trajectory
from scalespace.processes import make_process
from scalespace.stats.marginals import OracleMarginal


def test_identity_entropy_agrees_with_the_direct_one_and_has_a_smaller_error(digits):
    vp = make_process("vp", (1, 8, 8))
    train = digits[:200]
    traj = forward_trajectory(vp, train, 128, 0, eval_indices(vp.T, 5), OracleMarginal(vp, train))
    assert traj.n_train == 200
    rows = traj.rows(vp)
    assert rows[0]["marginal_entropy_identity"] is None  # sigma_0 = 0: no density
    ratios = []
    for r in rows[1:]:
        h, se = r["marginal_entropy"], r["marginal_entropy_se"]
        hi, sei = r["marginal_entropy_identity"], r["marginal_entropy_identity_se"]
        assert hi == pytest.approx(r["conditional_entropy"] + math.log(200) - r["information_loss"], rel=1e-12)
        assert sei == r["information_loss_se"]
        assert abs(h - hi) <= 4 * (se + sei) + 1e-6
        ratios.append(se / max(sei, 1e-12))
    assert min(ratios) > 3 and max(ratios) > 10, ratios
    # without the oracle (no mixture size) the identity is not offered
    plain = forward_trajectory(vp, train, 16, 0, eval_indices(vp.T, 2), None)
    assert plain.n_train is None and plain.rows(vp)[1]["marginal_entropy_identity"] is None


def test_trajectory_layouts_read_back_and_merge_checks_n_train(digits):
    vp = make_process("vp", (1, 8, 8))
    train = digits[:50]
    a = forward_trajectory(vp, train, 8, 0, [0, 500, 1000], OracleMarginal(vp, train))
    d = a.to_dict()
    assert d["format"] == FORMAT == "scalespace.forward_trajectory/2" and d["n_train"] == 50
    back = ForwardTrajectory.from_dict(d)
    assert back.n_train == 50 and back.rows(vp) == a.rows(vp)
    old = dict(d, format="scalespace.forward_trajectory/1")
    del old["n_train"]
    legacy = ForwardTrajectory.from_dict(old)
    assert legacy.n_train is None and legacy.rows(vp)[1]["marginal_entropy_identity"] is None
    assert legacy.rows(vp)[1]["marginal_entropy"] == a.rows(vp)[1]["marginal_entropy"]
    with pytest.raises(ScalespaceError, match="forward_trajectory/9"):
        ForwardTrajectory.from_dict(dict(d, format="scalespace.forward_trajectory/9"))
    with pytest.raises(ScalespaceError, match="n_train"):
        a.merge(legacy)
