"""Admission of a job: validate the spec against this service's limits, then queue it.

Everything that can be refused before a worker spends time on it is refused
here, as a ScalespaceError "field: reason" (the API answers 422): the spec's
own validation, n above SCALESPACE_MAX_N, a model id with no card in the
store, a process whose schedule is invalid, a step count or sampler that does
not fit the process, and every child of a sweep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from scalespace import ScalespaceError
from scalespace.jobs.spec_base import Spec


class LaneFull(Exception):
    def __init__(self, lane: str, depth: int, limit: int):
        super().__init__(f"lane {lane!r} is full ({depth} of {limit} jobs queued); retry later")
        self.lane, self.depth, self.limit = lane, depth, limit


class IdempotencyConflict(Exception):
    def __init__(self, job_id: str):
        super().__init__(f"Idempotency-Key was already used for job {job_id} with a different spec; use a new key")
        self.job_id = job_id


@dataclass(frozen=True)
class Submitted:
    job_id: str
    created: bool  # False: the idempotency key named an earlier job


def field_and_reason(message: str) -> tuple[str | None, str]:
    """'spec.n: too big' -> ('spec.n', 'too big'); a message without a field -> (None, message)."""
    head, sep, rest = message.partition(": ")
    if sep and head and all(part.replace("_", "").replace("-", "").isalnum() for part in head.split(".")):
        return head, rest
    return None, message


def check_spec(data: Any, settings: Any, store: Any) -> Spec:
    """The parsed spec, or ScalespaceError("field: reason") naming what to fix."""
    from scalespace.jobs.specs import parse_spec

    spec = data if isinstance(data, Spec) else parse_spec(data)
    if spec.kind == "sweep":
        from scalespace.jobs.sweep import plan_sweep

        for child in plan_sweep(spec):
            try:
                _check_one(parse_spec(child.spec), settings)
            except ScalespaceError as e:
                field, reason = field_and_reason(str(e))
                axis = {"process": "processes", "data": "data", "model": "models"}.get(field or "", f"template.{field}")
                raise ScalespaceError(f"{axis}: {reason}" if field else str(e)) from None
        for model in spec.models:
            _check_model(model, store, "models")
        return spec
    _check_one(spec, settings)
    _check_model(getattr(spec, "model", "oracle"), store, "model")
    return spec


def _check_one(spec: Spec, settings: Any) -> None:
    n = getattr(spec, "n", None)
    if n is not None and n > settings.max_n:
        raise ScalespaceError(f"n: {n} is above this service's limit of {settings.max_n} (SCALESPACE_MAX_N); ask for fewer")
    if hasattr(spec, "process") and hasattr(spec, "data"):
        params = json.dumps(getattr(spec, "process_params", {}), sort_keys=True)
        seed = spec.seed if spec.process == "osmosis" else None  # osmosis guidance is drawn from the seed
        process = _process(spec.process, params, spec.data, getattr(spec, "data_size", None), seed)
        if spec.kind == "sample":
            _check_sampler(spec, process)


@lru_cache(maxsize=128)
def _process(name: str, params: str, data: str, size: int | None, seed: int | None) -> Any:
    """Build (and so validate) a process once per configuration: a schedule check can take a while."""
    from scalespace.data import dataset_shape
    from scalespace.processes import make_process

    if data not in _datasets():
        raise ScalespaceError(f"data: unknown data set {data!r}; choose one of {', '.join(_datasets())}")
    p = dict(json.loads(params))
    if name == "osmosis" and seed is not None:
        p.setdefault("guidance_seed", seed)
    try:
        return make_process(name, dataset_shape(data, size), p)
    except ScalespaceError as e:
        field, reason = field_and_reason(str(e))
        raise ScalespaceError(str(e) if field else f"process_params: {e}") from None


def _datasets() -> tuple[str, ...]:
    from scalespace.data import DATASETS

    return tuple(DATASETS)


def _check_sampler(spec: Any, process: Any) -> None:
    """The checks of scalespace.jobs.sample.check_sample_spec, on the cached process."""
    from scalespace.sampling import check_sampler, respace

    try:
        respace(process.T, spec.steps)
    except ScalespaceError as e:
        raise ScalespaceError(f"steps: {e}") from None
    check_sampler(spec.sampler, process)


def _check_model(model: str, store: Any, field: str) -> None:
    if model == "oracle":
        return
    from scalespace.ids import check_id

    check_id(model, "model id")
    if not store.exists("models", model, "card.json"):
        raise ScalespaceError(f"{field}: unknown model id {model!r} (no card in the store's models); "
                              "train it first or use 'oracle'")


def submit_spec(spec: Spec, *, settings: Any, jobstore: Any, enqueue: Callable[[str, str], None], lane: str,
                deadline_s: float | None = None, idempotency_key: str | None = None,
                job_id: str | None = None) -> Submitted:
    """Create the record and put the job on its lane's queue (atomic admission, then the message)."""
    from scalespace.jobs.run import new_job_id

    job_id = job_id or new_job_id(spec)
    limit = settings.lanes().get(lane, -1)
    out = jobstore.submit(job_id, spec.model_dump(mode="json"), kind=spec.kind, spec_hash=spec.spec_hash(),
                          lane=lane, limit=limit, deadline_s=deadline_s, idempotency_key=idempotency_key)
    if out.action == "full":
        raise LaneFull(lane, int(out.parent or 0), limit)
    if out.action in ("existing", "exists"):
        if out.extra and out.extra[0] != spec.spec_hash():
            raise IdempotencyConflict(out.parent)
        return Submitted(out.parent, created=False)
    try:
        enqueue(job_id, lane)
    except Exception:
        jobstore.delete(job_id)  # never leave a queued record without a message
        raise
    return Submitted(job_id, created=True)
