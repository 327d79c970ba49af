"""Admission of a job: validate the spec against this service's limits, then queue it.

Everything that can be refused before a worker spends time on it is refused
here, as a ScalespaceError "field: reason" (the API answers 422): the spec's
own validation, n above SCALESPACE_MAX_N, a model id with no card in the
store, a process whose schedule is invalid, and whatever the check of the
spec's kind refuses (scalespace.jobs.kinds: a step count or sampler that does
not fit the process, a training objective it cannot take, ...). A sweep's
children are admitted one by one, each with its own kind's check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from scalespace import ScalespaceError
from scalespace.data import dataset_shape
from scalespace.ids import check_id
from scalespace.jobs.kinds import job_kind
from scalespace.jobs.run import new_job_id
from scalespace.jobs.specs import GRID_FIELDS, ProcessDataSpec, Spec, parse_spec
from scalespace.processes import make_process, process_class


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
    spec = data if isinstance(data, Spec) else parse_spec(data)
    kind = job_kind(spec.kind)
    if kind.grid:
        for child in kind.check(spec):  # the grid's cells, each a validated spec
            try:
                _check_one(parse_spec(child.spec), settings)
            except ScalespaceError as e:
                field, reason = field_and_reason(str(e))
                axis = GRID_FIELDS.get(field or "", f"template.{field}")
                raise ScalespaceError(f"{axis}: {reason}" if field else str(e)) from None
        for model in spec.models:
            _check_model(model, store, "models")
        return spec
    _check_one(spec, settings)
    _check_model(getattr(spec, "model", "oracle"), store, "model")
    return spec


def _check_one(spec: ProcessDataSpec, settings: Any) -> None:
    """A single job: n within this service's limit, then its kind's check on the (cached) process."""
    n = getattr(spec, "n", None)
    if n is not None and n > settings.max_n:
        raise ScalespaceError(f"n: {n} is above this service's limit of {settings.max_n} (SCALESPACE_MAX_N); ask for fewer")
    params = json.dumps(spec.process_params, sort_keys=True)
    # parameters drawn from the job's seed (osmosis guidance): the seed is part of the cache key only for them
    seed = spec.seed if process_class(spec.process).seeded_params else None
    process = _process(spec.process, params, spec.data, spec.data_size, seed)
    job_kind(spec.kind).check(spec, process)


@lru_cache(maxsize=128)
def _process(name: str, params: str, data: str, size: int | None, seed: int | None) -> Any:
    """Build (and so validate) a process once per configuration: a schedule check can take a while."""
    p = dict(json.loads(params))
    if seed is not None:
        for param in process_class(name).seeded_params:
            p.setdefault(param, seed)
    try:
        return make_process(name, dataset_shape(data, size), p)
    except ScalespaceError as e:
        field, reason = field_and_reason(str(e))
        raise ScalespaceError(str(e) if field else f"process_params: {e}") from None


def _check_model(model: str, store: Any, field: str) -> None:
    if model == "oracle":
        return
    check_id(model, "model id")
    if not store.exists("models", model, "card.json"):
        raise ScalespaceError(f"{field}: unknown model id {model!r} (no card in the store's models); "
                              "train it first or use 'oracle'")


def submit_spec(spec: Spec, *, settings: Any, jobstore: Any, enqueue: Callable[[str, str], None], lane: str,
                deadline_s: float | None = None, idempotency_key: str | None = None,
                job_id: str | None = None) -> Submitted:
    """Create the record and put the job on its lane's queue (atomic admission, then the message)."""
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
