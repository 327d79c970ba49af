"""The schedule validation runs over all steps at once; its verdicts and messages are the step loop's."""

from __future__ import annotations

import math

import pytest
import torch

from scalespace import ScalespaceError
from scalespace.processes import make_process
from scalespace.processes.base import LinearGaussianProcess


def loop_validate(p: LinearGaussianProcess) -> None:
    """The step-by-step validation that the vectorised one replaced (the reference)."""
    for i in range(p.T + 1):
        a, s = p.alpha(i), p.sigma(i)
        if not torch.isfinite(a).all() or not math.isfinite(s) or s < 0:
            raise ScalespaceError(f"process {p.name!r}: schedule is not finite at step {i}; check process_params")
        if not torch.isfinite(p.log_alpha(i)).all():
            raise ScalespaceError(f"process {p.name!r}: alpha is 0 at step {i}, transitions would divide by it; "
                                  "check process_params")
    t = p.times()
    if not bool((t[1:] > t[:-1]).all()):
        raise ScalespaceError(f"process {p.name!r}: time grid must increase; check process_params")
    for i in range(1, p.T + 1):
        _, s2 = p.transition(i - 1, i)
        scale = max(p.sigma(i) ** 2, 1e-300)
        if bool((s2 < -1e-10 * scale).any()):
            raise ScalespaceError(f"process {p.name!r}: sigma_{{t|s}}^2 < 0 between steps {i - 1} and {i} "
                                  f"(min {float(s2.min()):.3g}); {p._schedule_hint()}")


def verdict(fn) -> str:
    try:
        fn()
    except ScalespaceError as e:
        return str(e)
    return "ok"


class Unvalidated:
    """Build a process without its validation, to run both validations on it."""

    def __init__(self, name, shape, params):
        from scalespace.processes import process_class

        cls = process_class(name)
        orig = cls.validate
        cls.validate = lambda self: None
        try:
            self.p = cls(shape, params)
        finally:
            cls.validate = orig


CASES = [
    ("vp", (1, 8, 8), {}),
    ("vp", (1, 8, 8), {"schedule": "cosine", "T": 500}),
    ("vp", (1, 8, 8), {"schedule": "custom", "betas": [0.1, 0.2, -0.3, 0.1]}),  # abar rises at step 3
    ("vp", (1, 8, 8), {"schedule": "custom", "betas": [0.1, -float("inf"), 0.2]}),
    ("vp", (1, 8, 8), {"schedule": "custom", "betas": [0.5] * 2000}),  # abar underflows: alpha is 0
    ("ve", (1, 8, 8), {"sigmas": [0.1, 0.2, 0.15, 0.3]}),  # sigma falls between steps 2 and 3
    ("ve", (1, 8, 8), {"sigmas": [0.1, float("inf")]}),
    ("ve", (3, 16, 16), {"T": 300}),
    ("blurring", (1, 8, 8), {}),
    ("blurring", (1, 16, 16), {"T": 20, "sigma_blur_max": 400.0}),  # blurs faster than the noise allows
    ("blurring", (1, 8, 8), {"T": 50, "logsnr_min": -1400.0}),
    ("blurring", (1, 28, 28), {"T": 200, "sigma_blur_max": 400.0}),
    ("blurring", (1, 28, 28), {"T": 300, "sigma_blur_max": 30.0, "d_min": 1e-6}),
    ("blurring", (1, 28, 28), {"T": 100, "logsnr_min": -1380.0, "logsnr_max": 1.0}),
    ("heat", (1, 8, 8), {}),
    ("heat", (1, 28, 28), {"K": 400, "sigma_blur_max": 60.0}),
    ("heat", (1, 28, 28), {"K": 300, "sigma_blur_max": 1e160}),
]


@pytest.mark.parametrize("name,shape,params", CASES)
def test_same_verdict_and_message_as_the_step_loop(name, shape, params):
    p = Unvalidated(name, shape, params).p
    assert verdict(p.validate) == verdict(lambda: loop_validate(p))


def test_a_negative_transition_variance_is_refused_at_its_step():
    with pytest.raises(ScalespaceError) as e:
        make_process("ve", (1, 8, 8), {"sigmas": [0.1, 0.2, 0.15, 0.3]})
    assert str(e.value).startswith("process 've': sigma_{t|s}^2 < 0 between steps 2 and 3 (min -0.0175)")


def test_chunks_do_not_change_the_verdict(monkeypatch):
    p = Unvalidated("vp", (1, 8, 8), {"schedule": "custom", "betas": [0.01] * 37 + [-0.5] + [0.01] * 20}).p
    want = verdict(lambda: loop_validate(p))
    assert "between steps 37 and 38" in want
    monkeypatch.setattr(LinearGaussianProcess, "VALIDATE_CHUNK", 5)
    assert verdict(p.validate) == want


@pytest.mark.parametrize("name,params", [("vp", {}), ("vp", {"schedule": "cosine"}), ("ve", {}), ("blurring", {}),
                                         ("heat", {})])
def test_whole_array_schedule_equals_the_closed_forms_bit_for_bit(name, params):
    p = make_process(name, (1, 8, 8), params)
    a, la = p.alphas(torch.arange(p.T + 1))
    for i in range(p.T + 1):
        assert torch.equal(a[i], p.alpha(i)) and torch.equal(la[i], p.log_alpha(i))
    assert p.sigma_all().tolist() == [p.sigma(i) for i in range(p.T + 1)]


@pytest.mark.parametrize("step,factor", [(5, 3.0), (150, 1.0 + 1e-9), (150, 1.0 + 1e-13), (299, 50.0)])
def test_a_blurring_schedule_broken_at_one_step_is_refused_as_the_loop_does(step, factor):
    """The screen at lambda = 0 sends the steps it cannot clear to every eigenvalue: a schedule whose a_t jumps
    at one step (by much, or by a hair at the bound) gets the loop's verdict, step and minimum."""
    p = Unvalidated("blurring", (1, 28, 28), {"T": 300}).p
    p.a = p.a.clone()
    p.a[step] *= factor
    assert verdict(p.validate) == verdict(lambda: loop_validate(p))


def test_a_broken_blurring_step_names_its_step():
    p = Unvalidated("blurring", (1, 28, 28), {"T": 300}).p
    p.a = p.a.clone()
    p.a[5] *= 3.0
    with pytest.raises(ScalespaceError, match=r"sigma_\{t\|s\}\^2 < 0 between steps 4 and 5 \(min "):
        p.validate()
