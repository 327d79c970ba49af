"""The train job's progress: each evaluation reports its sampling step by step with its real total, and a
cancel that comes during an evaluation stops it there."""

from __future__ import annotations

import pytest

from scalespace.jobs import JobStopped, run_job
from scalespace.jobs import context
from scalespace.jobs.context import Progress


def _runs(events: list[Progress], phase: str) -> list[list[Progress]]:
    """The stretches of consecutive reports of `phase`."""
    out: list[list[Progress]] = []
    for i, p in enumerate(events):
        if p.phase == phase:
            if i == 0 or events[i - 1].phase != phase:
                out.append([])
            out[-1].append(p)
    return out


def test_periodic_evaluations_report_their_sampling_steps(store, make_train_spec, monkeypatch):
    monkeypatch.setattr(context, "PROGRESS_INTERVAL_S", 0.0)  # every step reaches the sink
    events: list[Progress] = []
    spec = make_train_spec("vp", steps=8, eval_every=4, eval_samples=8, eval_steps=5)
    run_job(spec, store, events.append)
    evaluations = _runs(events, "evaluate")
    assert len(evaluations) == 2  # at step 4 and the final one (step 8)
    for run, step in zip(evaluations, (4, 8)):
        # one batch of 8 samples, 5 reverse steps, then the Fréchet distance
        assert [(p.done, p.total) for p in run] == [(k, 6) for k in range(7)]
        assert run[-1].figures["train_step"] == step and run[-1].figures["fd"] > 0
    assert [p.done for p in events if p.phase == "train"] == [2, 4, 6, 8]
    assert [p.phase for p in events][:2] == ["load train", "load train"]


def test_cancel_during_an_evaluation_stops_it(store, make_train_spec, monkeypatch):
    monkeypatch.setattr(context, "PROGRESS_INTERVAL_S", 0.0)  # every step reaches the sink, however fast
    events: list[Progress] = []
    state = {"cancel": False}

    def progress(p: Progress) -> None:
        events.append(p)
        if p.phase == "evaluate" and p.done >= 2:
            state["cancel"] = True

    def should_stop() -> str | None:
        return "cancelled" if state["cancel"] else None

    spec = make_train_spec("vp", steps=8, eval_every=4, eval_samples=8, eval_steps=20)
    with pytest.raises(JobStopped, match="cancelled"):
        run_job(spec, store, progress, should_stop=should_stop)
    last = events[-1]
    # it stopped inside the first evaluation (after training step 4), not at its end or at the next training report
    assert last.phase == "evaluate" and last.done < last.total
    assert [p.done for p in events if p.phase == "train"] == [2]
