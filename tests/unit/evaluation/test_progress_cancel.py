"""Progress and cancellation of the evaluate job: real totals in every phase, and a cancel that lands mid-phase.

The cancel tests run a job in a thread whose stop check turns to "cancelled" from another thread once the job
is inside the phase (its first steps reported), as the service's cancel flag does, and expect JobStopped within
the product's bound of 5 s. The phases they cancel would run for minutes on this machine's CPU without it
(measured: the reverse phase below about 2,000 steps of 256 samples at 10 to 40 steps a second; the
robustness phase's first run alone 1,000 steps of 320 samples), so only a stop check inside the phase's
step loop can meet the bound.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from evaluate_helpers import fast_spec
from scalespace.data import dataset_shape
from scalespace.evaluation import robustness as rob
from scalespace.evaluation.density import density_steps
from scalespace.evaluation.forward_trajectory import eval_indices, forward_steps
from scalespace.evaluation.invariances import invariance_steps
from scalespace.evaluation.pictures import REVERSE_SAMPLES
from scalespace.evaluation.plots import PLOTS
from scalespace.evaluation.reverse import reverse_steps
from scalespace.jobs import context
from scalespace.jobs.context import JobContext, Progress
from scalespace.jobs.run import run_job
from scalespace.jobs.sample import process_for
from scalespace.jobs.specs import parse_spec
from scalespace.jobs.stopping import JobStopped

#: the product's promise: a running job stops within this long of a cancel
CANCEL_BOUND_S = 5.0
#: how long a broken cancel may keep a test waiting before it fails
GIVE_UP_S = 120.0

PHASES = ["load train", "load heldout", "forward", "invariances", "reference", "reverse", "robustness", "density",
          "pictures", "report"]


def _by_phase(events: list[Progress]) -> dict[str, list[Progress]]:
    out: dict[str, list[Progress]] = {}
    for p in events:
        out.setdefault(p.phase, []).append(p)
    return out


def test_every_phase_reports_real_totals_in_order(store, monkeypatch):
    monkeypatch.setattr(context, "PROGRESS_INTERVAL_S", 0.0)  # every step reaches the sink
    events: list[Progress] = []
    raw = fast_spec("vp")
    run_job(raw, store, progress=events.append)
    spec = parse_spec(raw)

    # phases in order, each one stretch of reports (no phase comes back after another began)
    order = [p.phase for i, p in enumerate(events) if i == 0 or events[i - 1].phase != p.phase]
    assert len(order) == len(set(order)), order
    assert [ph for ph in order if ph in PHASES] == PHASES

    phases = _by_phase(events)
    for name, reports in phases.items():
        totals = {p.total for p in reports}
        assert len(totals) == 1, (name, totals)  # the total is known when the phase starts
        dones = [p.done for p in reports]
        assert dones == sorted(dones), (name, dones)  # monotone
        assert 0 <= dones[0] and dones[-1] == reports[0].total, (name, dones)  # done reaches total

    # the totals are the phases' real work, not a count of phases
    process = process_for(spec, dataset_shape(spec.data, spec.data_size))
    idx = eval_indices(process.T, spec.eval_steps)
    opts = spec.robustness
    expected = {
        "forward": 3 + forward_steps(spec.n, len(idx), spec.batch_size),
        "invariances": invariance_steps(process.shape, spec.n_invariance, eval_indices(process.T, spec.invariance_steps)),
        "reference": 2,
        "reverse": reverse_steps(process, spec.n_reverse, spec.reverse_steps, spec.batch_size) + 5,
        "robustness": (len(rob.samplers_for(process)) * rob.sensitivity_steps(process, opts.steps)
                       + len(opts.seeds) * (rob.sampling_steps(process, opts.n, opts.steps, spec.batch_size) + 1)
                       + rob.steps_curve_steps(process, opts.n, list(opts.step_counts)) + 1),
        "density": density_steps(process, idx),
        "pictures": reverse_steps(process, REVERSE_SAMPLES, spec.reverse_steps, REVERSE_SAMPLES) + 1,
        "report": len(PLOTS) + 2,
    }
    got = {name: phases[name][0].total for name in expected}
    assert got == expected
    assert expected["reverse"] == 25 + 5 and expected["forward"] == 3 + len(idx) + 1  # one batch each here
    # the step loops report every step: no phase jumps from 0 to its total
    for name in ("forward", "reverse", "robustness", "density", "pictures"):
        assert {p.done for p in phases[name]} == set(range(phases[name][0].total + 1)), name
    for name in ("invariances", "report"):
        assert phases[name][0].done == 0 and len(phases[name]) >= 3, name
    for name in ("load train", "load heldout"):  # digits at their own size: one step, made from scikit-learn's
        assert [(p.done, p.total) for p in phases[name]] == [(0, 1), (1, 1)], name


def test_tick_passes_progress_on_every_interval_and_checks_stop_often(store, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(context.time, "monotonic", lambda: clock[0])
    sent: list[Progress] = []
    checks = [0]

    def should_stop() -> str | None:
        checks[0] += 1
        return None

    ctx = JobContext("job", store, progress=sent.append, should_stop=should_stop)
    steps = ctx.phase("reverse", 200)
    for _ in range(99):
        clock[0] += 0.0625  # a step of 1/16 s (exact in binary): above the stop-check interval
        steps.step()
    assert checks[0] == 100  # the phase's start and every step
    assert [p.done for p in sent] == list(range(0, 100, 4))  # every 0.2 s (4 steps) of work
    steps.at(200)
    steps.finish()
    assert [p.done for p in sent][-1] == 200 and [p.done for p in sent].count(200) == 1  # the last, once

    monkeypatch.setattr(context, "PROGRESS_INTERVAL_S", 1000.0)
    checks[0], sent[:] = 0, []
    steps = ctx.phase("robustness", 100)
    for _ in range(70):  # steps of 1/128 s, far shorter than the stop-check interval: a check every 7 steps
        clock[0] += 1 / 128
        steps.step()
    assert checks[0] == 1 + 10 and [p.done for p in sent] == [0]


class _CancelAfter:
    """Runs a job in a thread; cancels it from this thread once `phase` has reported `at_least` steps."""

    def __init__(self, spec: dict[str, Any], store: Any, phase: str, at_least: int = 1):
        self.phase, self.at_least = phase, at_least
        self.events: list[Progress] = []
        self.inside = threading.Event()
        self.cancel = threading.Event()
        self.cancelled_at: float | None = None
        self.stopped_at: float | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(spec, store), daemon=True)

    def _progress(self, p: Progress) -> None:
        self.events.append(p)
        if p.phase == self.phase and p.done >= self.at_least:
            self.inside.set()

    def _should_stop(self) -> str | None:
        return "cancelled" if self.cancel.is_set() else None

    def _run(self, spec: dict[str, Any], store: Any) -> None:
        try:
            run_job(spec, store, progress=self._progress, should_stop=self._should_stop)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e
        finally:
            self.stopped_at = time.monotonic()

    def run(self) -> float:
        """Start, cancel inside the phase, wait for the stop: the seconds from the cancel to the stop."""
        self.thread.start()
        assert self.inside.wait(GIVE_UP_S), f"the {self.phase} phase never reported a step"
        self.cancelled_at = time.monotonic()
        self.cancel.set()
        self.thread.join(GIVE_UP_S)
        assert not self.thread.is_alive(), f"the job did not stop within {GIVE_UP_S:.0f} s of the cancel"
        return self.stopped_at - self.cancelled_at


def _phase_left_unfinished(events: list[Progress], phase: str) -> Progress:
    last = [p for p in events if p.phase == phase][-1]
    assert last.done < last.total, last  # the cancel came inside the phase, which did not finish
    assert all(p.phase != "report" for p in events)
    return last


def test_cancel_during_reverse_phase_stops_within_bound(store):
    # about 2,000 reverse steps of 256 samples: minutes of work on a 2-core CPU without the cancel
    spec = {"kind": "evaluate", "process": "vp", "data": "digits", "checks": ["reverse"], "n_reverse": 512,
            "reverse_steps": 1000, "device": "cpu"}
    job = _CancelAfter(spec, store, "reverse")
    latency = job.run()
    assert isinstance(job.error, JobStopped) and str(job.error) == "cancelled", job.error
    last = _phase_left_unfinished(job.events, "reverse")
    assert last.total == 2 * 1000 + 5
    assert latency < CANCEL_BOUND_S, f"stopped {latency:.2f} s after the cancel"


def test_cancel_during_robustness_phase_stops_within_bound(store):
    # the sensitivity run alone: 1,000 reverse steps of (1 + 4 eps) x 64 samples
    spec = {"kind": "evaluate", "process": "vp", "data": "digits", "checks": ["robustness"], "device": "cpu",
            "robustness": {"n": 64, "steps": 1000, "seeds": [0, 1], "step_counts": [1000], "n_boot": 10}}
    job = _CancelAfter(spec, store, "robustness")
    latency = job.run()
    assert isinstance(job.error, JobStopped) and str(job.error) == "cancelled", job.error
    _phase_left_unfinished(job.events, "robustness")
    assert latency < CANCEL_BOUND_S, f"stopped {latency:.2f} s after the cancel"


def _cancel_on_entry(monkeypatch, module: Any, name: str, state: dict[str, bool]) -> list[str]:
    """Wraps module.name: the cancel is raised as it is entered; the test sees whether a call ever returned."""
    done: list[str] = []
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state["stop"] = True
        out = original(*args, **kwargs)
        done.append(name)
        return out

    monkeypatch.setattr(module, name, wrapper)
    return done


def test_cancel_reaches_inside_the_f2_test_and_the_r2_chain(store, monkeypatch):
    """The forward checks and R2 poll between their own steps: a cancel raised as F2's first test or R2 starts
    stops it inside (the test and R2's restarted chain never return), not after it."""
    from scalespace.evaluation import forward
    from scalespace.jobs import evaluate as job

    monkeypatch.setattr(context, "STOP_CHECK_INTERVAL_S", 0.0)
    state = {"stop": False}

    def stop() -> str | None:
        return "cancelled" if state["stop"] else None

    f2 = _cancel_on_entry(monkeypatch, forward, "chapman_kolmogorov_test", state)
    with pytest.raises(JobStopped):
        run_job(fast_spec("vp", checks=["forward"]), store, should_stop=stop)
    assert f2 == [], "F2's test ran to its end before the cancel was seen"

    state["stop"] = False
    r2 = _cancel_on_entry(monkeypatch, job, "check_r2", state)
    with pytest.raises(JobStopped):
        run_job(fast_spec("vp", checks=["reverse"]), store, should_stop=stop)
    assert r2 == [], "R2's chains ran to their end before the cancel was seen"
